"""ShowBatchTask: the task, its sub-tasks (task_details), their pagination and filters, and 404/400."""

from __future__ import annotations

import re

import pytest

from taskd_sdk import E_INVALID, E_TASK_NOT_FOUND, expect_error, expected_progress, progress, raw_json

HEX24 = re.compile(r"^[0-9a-fA-F]{24}$")


def targets_of(resp):
    return [d.target for d in (resp.task_details or [])]


def test_show_task_and_details(api):
    created = api.create_upgrade(targets=["t_a", "t_b", "t_c"])
    resp = api.show(created.task_id)
    assert resp.status_code == 200
    task = resp.batchtask
    assert task.task_id == created.task_id
    assert task.task_name == created.task_name
    assert task.status == "Waitting"
    assert progress(task) == expected_progress(total=3, waitting=3)
    assert targets_of(resp) == ["t_c", "t_b", "t_a"]  # newest sub-task (last target) first
    assert [d.status for d in resp.task_details] == ["Waitting"] * 3
    assert resp.page.count == 3
    assert HEX24.match(resp.page.marker or ""), resp.page.marker
    raw = raw_json(resp)
    assert isinstance(raw["task_details"], list)
    assert type(raw["page"]["count"]) is int


def test_details_pagination(api):
    task_id = api.create_upgrade(targets=["t_a", "t_b", "t_c"]).task_id
    first = api.show(task_id, limit=2)
    assert targets_of(first) == ["t_c", "t_b"]
    assert first.page.count == 3
    assert HEX24.match(first.page.marker or "")
    second = api.show(task_id, limit=2, marker=first.page.marker)
    assert targets_of(second) == ["t_a"]
    assert targets_of(api.show(task_id, limit=1, offset=1)) == ["t_b"]
    assert targets_of(api.show(task_id, offset=3)) == []
    assert targets_of(api.show(task_id, marker="f" * 24)) == ["t_c", "t_b", "t_a"]
    assert targets_of(api.show(task_id, marker="0" * 24)) == []
    # the task itself is always there, whatever page of details is asked for
    assert api.show(task_id, offset=3).batchtask.task_id == task_id


def test_details_default_limit_is_10(api):
    targets = [f"dev_{i:02d}" for i in range(12)]
    resp = api.show(api.create_upgrade(targets=targets).task_id)
    assert targets_of(resp) == targets[::-1][:10]
    assert resp.page.count == 12


def test_details_filters(api):
    task_id = api.create_upgrade(targets=["t_a", "t_b", "t_c"]).task_id
    api.stop(task_id, targets=["t_a"])

    def shown(**q):
        resp = api.show(task_id, **q)
        assert resp.page.count == len(resp.task_details), q
        return [(d.target, d.status) for d in resp.task_details]

    assert shown(target="t_b") == [("t_b", "Waitting")]
    assert shown(target="nobody") == []
    assert shown(task_detail_status="Stopped") == [("t_a", "Stopped")]
    assert shown(task_detail_status="Waitting") == [("t_c", "Waitting"), ("t_b", "Waitting")]
    assert shown(task_detail_status="Processing") == []
    assert shown(task_detail_status="Stopped", target="t_b") == []
    assert shown(task_detail_status="DeviceInProgress") == []
    assert shown(task_detail_status="Rejected") == []
    assert shown() == [("t_c", "Waitting"), ("t_b", "Waitting"), ("t_a", "Stopped")]


def test_detail_filter_count_counts_all_matching(api):
    targets = [f"dev_{i}" for i in range(5)]
    task_id = api.create_upgrade(targets=targets).task_id
    resp = api.show(task_id, task_detail_status="Waitting", limit=2)
    assert targets_of(resp) == ["dev_4", "dev_3"]
    assert resp.page.count == 5


@pytest.mark.parametrize("status", ["Success", "Fail", "Processing", "FailWaitRetry", "Stopped", "Waitting",
                                    "Removed", "DeviceInProgress", "Rejected"])
def test_every_detail_status_filter_is_accepted(shared_api, status):
    task_id = shared_api.create_upgrade(targets=["dev_1"]).task_id
    resp = shared_api.show(task_id, task_detail_status=status)
    assert resp.status_code == 200
    assert targets_of(resp) == (["dev_1"] if status == "Waitting" else [])


@pytest.fixture(scope="module")
def one_task(shared_api):
    return shared_api.create_upgrade(targets=["dev_1"]).task_id


@pytest.mark.parametrize("query", [
    pytest.param({"task_detail_status": "Bogus"}, id="status-unknown"),
    pytest.param({"task_detail_status": "waitting"}, id="status-lowercase"),
    pytest.param({"target": "bad target"}, id="target-space"),
    pytest.param({"target": "d" * 129}, id="target-129"),
    pytest.param({"limit": 0}, id="limit-0"),
    pytest.param({"limit": 51}, id="limit-51"),
    pytest.param({"offset": -1}, id="offset-negative"),
    pytest.param({"offset": 501}, id="offset-501"),
    pytest.param({"marker": "xyz"}, id="marker-not-hex"),
    pytest.param({"marker": "f" * 25}, id="marker-25"),
])
def test_show_rejects_invalid_query(shared_api, one_task, query):
    expect_error(lambda: shared_api.show(one_task, **query), 400, E_INVALID)


def test_show_accepts_boundary_query(shared_api, one_task):
    assert shared_api.show(one_task, limit=50, offset=500).task_details == []
    assert targets_of(shared_api.show(one_task, limit=1, target="d" * 128)) == []


@pytest.mark.parametrize("task_id", ["ffffffffffffffffffffffff", "abc", "000000000000000000000000"])
def test_show_unknown_task_is_404(shared_api, task_id):
    expect_error(lambda: shared_api.show(task_id), 404, E_TASK_NOT_FOUND)


@pytest.mark.parametrize("task_id", ["zzz", "ABCDEF", "f" * 25, "12345-6789"])
def test_show_invalid_task_id_is_400(shared_api, task_id):
    expect_error(lambda: shared_api.show(task_id), 400, E_INVALID)
