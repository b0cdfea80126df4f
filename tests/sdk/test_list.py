"""ListBatchTasks: order, pagination (limit/offset/marker), page.count, filters, query validation."""

from __future__ import annotations

import pytest

from taskd_sdk import E_INVALID, TASK_ID_RE, expect_error, raw_json


def ids_of(resp):
    return [t.task_id for t in (resp.batchtasks or [])]


def test_empty_list(api):
    resp = api.list()
    assert resp.status_code == 200
    assert resp.batchtasks == []
    assert resp.page is not None and resp.page.count == 0
    raw = raw_json(resp)
    assert raw["batchtasks"] == []
    assert raw["page"]["count"] == 0


def test_list_is_id_descending_with_total_count(api):
    created = [api.create_simple().task_id for _ in range(4)]
    resp = api.list()
    assert ids_of(resp) == created[::-1]
    assert resp.page.count == 4
    assert resp.page.marker == created[0]  # id of the last record returned
    first = resp.batchtasks[0]
    assert first.status == "Waitting" and first.task_type == "createCommands"
    assert first.task_progress.total == 1 and first.task_progress.waitting == 1
    assert type(raw_json(resp)["page"]["count"]) is int


def test_default_limit_is_10(api):
    created = [api.create_simple().task_id for _ in range(12)]
    resp = api.list()
    assert ids_of(resp) == created[::-1][:10]
    assert resp.page.count == 12  # all matching records, not the page size
    assert resp.page.marker == created[2]


def test_limit_offset_and_marker(api):
    c = [api.create_simple().task_id for _ in range(5)]  # c[4] newest
    desc = c[::-1]

    page = api.list(limit=2)
    assert ids_of(page) == desc[:2]
    assert page.page.count == 5
    assert page.page.marker == desc[1]

    assert ids_of(api.list(limit=2, offset=1)) == desc[1:3]
    assert ids_of(api.list(offset=4)) == desc[4:]
    assert ids_of(api.list(offset=5)) == []
    assert ids_of(api.list(marker=c[2])) == [c[1], c[0]]  # only ids < marker
    assert ids_of(api.list(marker=c[2], offset=1)) == [c[0]]
    assert ids_of(api.list(marker=c[2].upper())) == [c[1], c[0]]  # marker pattern allows A-F
    assert ids_of(api.list(marker="f" * 24)) == desc
    assert ids_of(api.list(marker="0" * 24)) == []
    assert api.list(limit=50, offset=500).batchtasks == []


def test_walk_all_pages_with_marker(api):
    created = [api.create_simple().task_id for _ in range(5)]
    seen, marker = [], None
    for _ in range(10):
        resp = api.list(limit=2, marker=marker)
        got = ids_of(resp)
        seen += got
        if len(got) < 2:
            break
        assert resp.page.marker == got[-1]
        marker = resp.page.marker
    assert seen == created[::-1]


def test_filters(api):
    fw = api.create_upgrade(task_type="firmwareUpgrade", app_id="app_1").task_id
    sw = api.create_upgrade(task_type="softwareUpgrade", app_id="app_2").task_id
    fz = api.create_simple(task_type="createMessages").task_id
    api.stop(sw)  # -> Stopped

    def listed(**q):
        resp = api.list(**q)
        assert resp.page.count == len(resp.batchtasks), q
        return ids_of(resp)

    assert listed(task_type="firmwareUpgrade") == [fw]
    assert listed(task_type="createMessages") == [fz]
    assert listed(task_type="moduleUpgrade") == []
    assert listed(status="Stopped") == [sw]
    assert listed(status="Waitting") == [fz, fw]
    assert listed(status="Processing") == []
    assert listed(app_id="app_1") == [fw]
    assert listed(app_id="app_2") == [sw]
    assert listed(app_id="app_3") == []
    assert listed(task_type="softwareUpgrade", status="Waitting") == []
    assert listed(task_type="softwareUpgrade", status="Stopped", app_id="app_2") == [sw]
    assert listed() == [fz, sw, fw]


def test_filter_count_counts_all_matching_not_the_page(api):
    fws = [api.create_upgrade().task_id for _ in range(3)]
    api.create_simple()
    resp = api.list(task_type="firmwareUpgrade", limit=1)
    assert ids_of(resp) == [fws[-1]]
    assert resp.page.count == 3


@pytest.mark.parametrize("status", ["Success", "Fail", "Processing", "PartialSuccess", "Stopped", "Waitting",
                                    "Initializing", "Stopping"])
def test_every_status_filter_is_accepted(shared_api, status):
    resp = shared_api.list(status=status)
    assert resp.status_code == 200
    assert all(t.status == status for t in resp.batchtasks)


@pytest.mark.parametrize("query", [
    pytest.param({"limit": 0}, id="limit-0"),
    pytest.param({"limit": 51}, id="limit-51"),
    pytest.param({"limit": -1}, id="limit-negative"),
    pytest.param({"offset": -1}, id="offset-negative"),
    pytest.param({"offset": 501}, id="offset-501"),
    pytest.param({"marker": "xyz"}, id="marker-not-hex"),
    pytest.param({"marker": "f" * 23}, id="marker-23"),
    pytest.param({"marker": "f" * 25}, id="marker-25"),
    pytest.param({"marker": "g" * 24}, id="marker-g"),
    pytest.param({"status": "Done"}, id="status-unknown"),
    pytest.param({"status": "waitting"}, id="status-lowercase"),
    pytest.param({"task_type": "unknownType"}, id="task_type-unknown"),
    pytest.param({"app_id": "bad app"}, id="app_id-space"),
    pytest.param({"app_id": "a" * 37}, id="app_id-37"),
])
def test_list_rejects_invalid_query(shared_api, query):
    expect_error(lambda: shared_api.list(**query), 400, E_INVALID)


def test_list_task_ids_are_24_hex(api):
    api.create_simple()
    assert all(TASK_ID_RE.match(i) for i in ids_of(api.list()))
