"""CreateBatchTask: success shape and every validation rule of the contract."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from taskd_sdk import (
    ALL_TASK_TYPES,
    E_BAD_JSON,
    E_BAD_TIME,
    E_INVALID,
    PACKAGE_ID,
    TASK_ID_RE,
    TIME_RE,
    UPGRADE_TYPES,
    expect_error,
    expected_progress,
    progress,
    raw_json,
    utc_in,
)

BASE = {
    "task_name": "fw_upgrade_1",
    "task_type": "firmwareUpgrade",
    "targets": ["dev_1", "dev_2"],
    "document": {"package_ids": [PACKAGE_ID]},
}


def body(**changes):
    """BASE with changes applied; a value of ... removes the field."""
    b = json.loads(json.dumps(BASE))
    for k, v in changes.items():
        if v is ...:
            b.pop(k, None)
        else:
            b[k] = v
    return b


def test_create_returns_the_new_waitting_task(api):
    targets = ["dev_a", "dev_b", "dev_c"]
    resp = api.create({
        "app_id": "app_1",
        "task_name": "fw_upgrade_main",
        "task_type": "firmwareUpgrade",
        "targets": targets,
        "document": {"package_ids": [PACKAGE_ID]},
        "task_policy": {"retry_count": 3, "retry_interval": 10},
        "need_confirm": False,
    })
    assert resp.status_code == 201
    assert TASK_ID_RE.match(resp.task_id or ""), resp.task_id
    assert resp.task_name == "fw_upgrade_main"
    assert resp.task_type == "firmwareUpgrade"
    assert resp.targets == targets
    assert resp.document == {"package_ids": [PACKAGE_ID]}
    assert (resp.task_policy.retry_count, resp.task_policy.retry_interval) == (3, 10)
    assert resp.need_confirm is False
    assert resp.status == "Waitting"
    assert progress(resp) == expected_progress(total=3, waitting=3)
    assert TIME_RE.match(resp.create_time or ""), resp.create_time
    created = datetime.strptime(resp.create_time, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 600, "create_time is not the UTC creation time"

    raw = raw_json(resp)  # JSON types the SDK would silently coerce
    assert raw["need_confirm"] is False
    for k, v in raw["task_progress"].items():
        assert type(v) is int, (k, v)
    assert type(raw["task_id"]) is str

    shown = api.show(resp.task_id).batchtask
    assert (shown.task_id, shown.task_name, shown.task_type, shown.status) == (
        resp.task_id, "fw_upgrade_main", "firmwareUpgrade", "Waitting")
    assert shown.targets == targets
    assert shown.document == {"package_ids": [PACKAGE_ID]}
    assert progress(shown) == expected_progress(total=3, waitting=3)
    assert shown.create_time == resp.create_time


def test_later_task_has_larger_id(api):
    ids = [api.create_simple().task_id for _ in range(4)]
    assert all(TASK_ID_RE.match(i) for i in ids), ids
    assert ids == sorted(ids) and len(set(ids)) == 4, ids


def test_create_echoes_optional_upgrade_fields(api):
    resp = api.create(body(task_name="fw_opts", need_confirm=True, task_mode="GATEWAY",
                           task_ext_info={"note": "hello", "n": 1},
                           task_policy={"schedule_time": utc_in(days=1), "retry_count": 5, "retry_interval": 1440}))
    assert resp.status_code == 201
    assert resp.need_confirm is True
    assert raw_json(resp)["need_confirm"] is True
    assert resp.task_mode == "GATEWAY"
    assert resp.task_ext_info == {"note": "hello", "n": 1}
    assert (resp.task_policy.retry_count, resp.task_policy.retry_interval) == (5, 1440)
    assert TIME_RE.match(resp.task_policy.schedule_time or "")
    assert resp.status == "Waitting"
    assert progress(resp) == expected_progress(total=2, waitting=2)


def test_chinese_task_name_is_accepted(api):
    resp = api.create(body(task_name="固件升级_任务1"))
    assert resp.status_code == 201
    assert resp.task_name == "固件升级_任务1"
    assert api.show(resp.task_id).batchtask.task_name == "固件升级_任务1"


@pytest.mark.parametrize("changes", [
    pytest.param({"task_name": "n" * 128}, id="task_name-128"),
    pytest.param({"targets": ["d" * 128]}, id="target-128-chars"),
    pytest.param({"targets": ["Dev-1_x", "0"]}, id="target-charset"),
    pytest.param({"task_policy": {"retry_count": 1, "retry_interval": 0}}, id="retry-min"),
    pytest.param({"task_policy": {"retry_count": 5, "retry_interval": 1440}}, id="retry-max"),
    pytest.param({"app_id": "a" * 36}, id="app_id-36"),
    pytest.param({"document": {"package_id": PACKAGE_ID}}, id="document-package_id"),
    pytest.param({"task_type": "moduleUpgrade", "need_confirm": True}, id="need_confirm-moduleUpgrade"),
    pytest.param({"task_type": "softwareUpgrade", "need_confirm": True}, id="need_confirm-softwareUpgrade"),
    pytest.param({"need_confirm": False, "task_type": "freezeDevices", "document": ...}, id="need_confirm-false"),
    pytest.param({"task_policy": {"schedule_time": "20200101T000000Z"}}, id="schedule_time-past-runs-now"),
    pytest.param({"task_policy": {"schedule_time": "PLACEHOLDER_6D"}}, id="schedule_time-in-6-days"),
    pytest.param({"task_ext_info": {"k": "v" * 100}}, id="task_ext_info-small"),
])
def test_create_accepts_boundary_values(api, changes):
    changes = dict(changes)
    if changes.get("task_policy", {}).get("schedule_time") == "PLACEHOLDER_6D":
        changes["task_policy"] = {"schedule_time": utc_in(days=6, hours=23)}
    resp = api.create(body(**changes))
    assert resp.status_code == 201
    assert resp.status == "Waitting"
    assert progress(resp)["total"] == len(resp.targets)


def _document_for(task_type):
    if task_type in UPGRADE_TYPES:
        return {"package_ids": [PACKAGE_ID]}
    return {
        "createCommands": {"service_id": "svc", "command_name": "reboot", "paras": {"delay": 1}},
        "createAsyncCommands": {"service_id": "svc", "command_name": "reboot", "paras": {"delay": 1},
                                "expire_time": 3600, "send_strategy": "immediately"},
        "createMessages": {"message": "hello"},
        "updateDeviceShadows": {"shadow": [{"service_id": "svc", "desired": {"power": "on"}}]},
    }.get(task_type)


# createDevices/updateDevices take their targets from an uploaded file: see test_files.py
@pytest.mark.parametrize("task_type", [t for t in ALL_TASK_TYPES if t not in ("createDevices", "updateDevices")])
def test_every_task_type_is_accepted(shared_api, task_type):
    b = {"task_name": f"type_{task_type}", "task_type": task_type, "targets": ["dev_1", "dev_2"]}
    doc = _document_for(task_type)
    if doc is not None:
        b["document"] = doc
    resp = shared_api.create(b)
    assert resp.status_code == 201
    assert resp.task_type == task_type
    assert resp.status == "Waitting"
    assert progress(resp) == expected_progress(total=2, waitting=2)


# targets_filter (device groups resolved at creation): test_devices.py


INVALID_BODIES = [
    pytest.param({"task_name": ...}, id="task_name-missing"),
    pytest.param({"task_name": ""}, id="task_name-empty"),
    pytest.param({"task_name": "n" * 129}, id="task_name-129"),
    pytest.param({"task_name": "bad-name"}, id="task_name-hyphen"),
    pytest.param({"task_name": "bad name"}, id="task_name-space"),
    pytest.param({"task_name": "名字!"}, id="task_name-punctuation"),
    pytest.param({"task_type": ...}, id="task_type-missing"),
    pytest.param({"task_type": "unknownType"}, id="task_type-unknown"),
    pytest.param({"task_type": "FirmwareUpgrade"}, id="task_type-case"),
    pytest.param({"targets": ["dev_1", "dev_1"]}, id="targets-duplicate"),
    pytest.param({"targets": ["bad/target"]}, id="target-slash"),
    pytest.param({"targets": ["bad target"]}, id="target-space"),
    pytest.param({"targets": ["dev.1"]}, id="target-dot"),
    pytest.param({"targets": [""]}, id="target-empty"),
    pytest.param({"targets": ["d" * 129]}, id="target-129-chars"),
    pytest.param({"document": ...}, id="upgrade-without-document"),
    pytest.param({"document": {}}, id="upgrade-document-without-package"),
    pytest.param({"document": {"package_ids": PACKAGE_ID}}, id="upgrade-package_ids-not-a-list"),
    pytest.param({"task_type": "softwareUpgrade", "document": {"other": 1}}, id="softwareUpgrade-no-package"),
    pytest.param({"task_type": "moduleUpgrade", "document": ...}, id="moduleUpgrade-without-document"),
    pytest.param({"task_policy": {"retry_count": 0, "retry_interval": 10}}, id="retry_count-0"),
    pytest.param({"task_policy": {"retry_count": 6, "retry_interval": 10}}, id="retry_count-6"),
    pytest.param({"task_policy": {"retry_count": 3, "retry_interval": -1}}, id="retry_interval-negative"),
    pytest.param({"task_policy": {"retry_count": 3, "retry_interval": 1441}}, id="retry_interval-1441"),
    pytest.param({"task_policy": {"retry_count": 3}}, id="retry_count-without-interval"),
    pytest.param({"task_policy": {"retry_interval": 10}}, id="retry_interval-without-count"),
    pytest.param({"task_mode": "gateway"}, id="task_mode-lowercase"),
    pytest.param({"task_mode": "NODE"}, id="task_mode-other"),
    pytest.param({"task_ext_info": {"k": "v" * 600}}, id="task_ext_info-over-512"),
    pytest.param({"task_type": "freezeDevices", "document": ..., "need_confirm": True},
                 id="need_confirm-on-freezeDevices"),
    pytest.param({"task_type": "createCommands", "need_confirm": True,
                  "document": {"service_id": "s", "command_name": "c", "paras": {}}},
                 id="need_confirm-on-createCommands"),
    pytest.param({"targets": ...}, id="no-target-source"),
    pytest.param({"app_id": "bad app"}, id="app_id-space"),
    pytest.param({"app_id": "a" * 37}, id="app_id-37"),
    pytest.param({"task_policy": {"schedule_time": "PLACEHOLDER_8D"}}, id="schedule_time-over-7-days"),
]


@pytest.mark.parametrize("changes", INVALID_BODIES)
def test_create_rejects_invalid_field(shared_api, changes):
    changes = dict(changes)
    if changes.get("task_policy", {}).get("schedule_time") == "PLACEHOLDER_8D":
        changes["task_policy"] = {"schedule_time": utc_in(days=8)}
    expect_error(lambda: shared_api.create(body(**changes)), 400, E_INVALID)


@pytest.mark.parametrize("raw", [
    pytest.param(json.dumps(body(targets="dev_1")), id="targets-not-a-list"),
    pytest.param(json.dumps(body(targets=[1, 2])), id="targets-not-strings"),
    pytest.param(json.dumps(body(task_name=42)), id="task_name-not-a-string"),
    pytest.param(json.dumps(body(task_policy={"retry_count": "three", "retry_interval": 10})),
                 id="retry_count-not-a-number"),
    pytest.param(json.dumps(body(need_confirm="yes")), id="need_confirm-not-a-bool"),
])
def test_create_rejects_wrongly_typed_field(shared_api, raw):
    expect_error(lambda: shared_api.create(raw), 400, E_INVALID)


def test_create_rejects_more_than_30000_targets(shared_api):
    expect_error(lambda: shared_api.create(body(targets=[f"d{i}" for i in range(30001)])), 400, E_INVALID)


def test_create_rejects_unknown_document_source(shared_api):
    b = {"task_name": "create_devs", "task_type": "createDevices", "document_source": "no_such_file_0123"}
    expect_error(lambda: shared_api.create(b), 400, E_INVALID)


@pytest.mark.parametrize("raw", [
    pytest.param("{not json", id="garbage"),
    pytest.param('{"task_name": "x", "task_type": "firmwareUpgrade"', id="truncated"),
    pytest.param('{"task_name": "x",}', id="trailing-comma"),
])
def test_create_rejects_body_that_is_not_json(shared_api, raw):
    expect_error(lambda: shared_api.create(raw), 400, E_BAD_JSON)


@pytest.mark.parametrize("schedule_time", [
    pytest.param("2024-01-01T00:00:00Z", id="iso-dashes"),
    pytest.param("20240101T000000", id="no-Z"),
    pytest.param("20240101000000Z", id="no-T"),
    pytest.param("abc", id="garbage"),
    pytest.param("20241301T000000Z", id="month-13"),
    pytest.param("20240230T120000Z", id="feb-30"),
    pytest.param("20240101T250000Z", id="hour-25"),
    pytest.param("20240101T126000Z", id="minute-60"),
])
def test_create_rejects_bad_schedule_time(shared_api, schedule_time):
    expect_error(lambda: shared_api.create(body(task_policy={"schedule_time": schedule_time})), 400, E_BAD_TIME)


def test_rejected_create_leaves_no_task(api):
    expect_error(lambda: api.create(body(targets=["dev_1", "dev_1"])), 400, E_INVALID)
    expect_error(lambda: api.create("{not json"), 400, E_BAD_JSON)
    resp = api.list()
    assert resp.batchtasks == [] and resp.page.count == 0
