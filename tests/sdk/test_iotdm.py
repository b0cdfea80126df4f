"""IoTDA instance tasks (IoTDMClient): operations recorded with `taskd ops create`, run by a real `taskd worker`,
listed, shown and retried with the official SDK."""

from __future__ import annotations

import re

import pytest
from huaweicloudsdkiotdm.v5 import (
    IoTDMClient,
    ListInstanceTasksRequest,
    RetryInstanceTaskRequest,
    ShowInstanceTaskRequest,
)

from taskd_sdk import (
    OPS_SCRIPT, Worker, closed_window, expect_error, new_hex_instance_id, ops_create, raw_json, service_client,
    wait_for,
)

TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
TYPES = ("CREATE", "MODIFY", "DELETE", "FREEZE", "UNFREEZE", "UPDATE_ACCESS_CONFIG", "UPDATE_ALLOW_LISTS",
         "OPEN_SNAT")


@pytest.fixture
def iotdm(server, creds):
    return service_client(IoTDMClient, server.url, creds)


@pytest.fixture
def worker(server, creds):
    w = Worker(server.url, creds, TYPES, ["sh", "-c", OPS_SCRIPT], concurrency=4)
    yield w
    w.stop()


def show(client, instance_id, task_id):
    return client.show_instance_task(ShowInstanceTaskRequest(instance_id=instance_id, task_id=task_id))


def status_is(client, instance_id, task_id, *wanted):
    def check():
        t = show(client, instance_id, task_id)
        return t if t.status in wanted else None
    return wait_for(check, f"task {task_id} {wanted}")


def test_a_worker_runs_operations_and_a_window_holds_one_back(server, creds, iotdm, worker):
    inst = new_hex_instance_id()
    created = ops_create(server, creds, "iotda-instance", inst, "CREATE", user_name="ops")
    start, end = closed_window()
    modify = ops_create(server, creds, "iotda-instance", inst, "MODIFY", window=f"{start}-{end}",
                        flavor_type="iotda.standard.s2", flavor_size=2, charge_mode="prePaid")
    done = status_is(iotdm, inst, created["operation_id"], "SUCCESS")
    assert done.type == "CREATE" and done.progress == 100
    for t in (done.create_time, done.start_time, done.end_time):
        assert TIME_RE.match(t), t
    # The MODIFY waits for its window (closed for the whole test) while the worker idles.
    held = show(iotdm, inst, modify["operation_id"])
    assert (held.status, held.progress, held.start_time) == ("PENDING", 0, None)
    assert (held.operate_window.start_time, held.operate_window.end_time) == (start, end)
    assert (held.target_config.flavor.type, held.target_config.flavor.size) == ("iotda.standard.s2", 2)
    assert held.target_config.charge_mode == "prePaid"
    listed = iotdm.list_instance_tasks(ListInstanceTasksRequest(instance_id=inst))
    assert listed.page.count == 2
    assert [t.task_id for t in listed.tasks] == [modify["operation_id"], created["operation_id"]]
    assert [t.status for t in listed.tasks] == ["PENDING", "SUCCESS"]
    assert isinstance(raw_json(listed)["page"]["count"], int)


def test_a_failed_task_is_retried_and_succeeds(server, creds, iotdm, worker):
    inst = "bad" + new_hex_instance_id()[3:]
    op = ops_create(server, creds, "iotda-instance", inst, "FREEZE")
    failed = status_is(iotdm, inst, op["operation_id"], "FAILED")
    assert failed.status_detail == "quota exceeded"
    retried = iotdm.retry_instance_task(RetryInstanceTaskRequest(instance_id=inst, task_id=op["operation_id"]))
    assert retried.task_id == op["operation_id"] and retried.status in ("PENDING", "RUNNING", "SUCCESS")
    done = status_is(iotdm, inst, op["operation_id"], "SUCCESS")
    assert done.progress == 100
    # Only a FAILED task can be retried.
    expect_error(lambda: iotdm.retry_instance_task(
        RetryInstanceTaskRequest(instance_id=inst, task_id=op["operation_id"])), 403, "IOTDA.014221")


def test_progress_reported_by_the_command_is_shown(server, creds, iotdm, tmp_path):
    """The command writes its progress to $TASKD_PROGRESS_FILE; the worker's heartbeats carry it."""
    release = tmp_path / "release"
    script = ('echo 40 > "$TASKD_PROGRESS_FILE"; '
              f'while [ ! -e {release} ]; do sleep 0.05; done; echo "$TASKD_SERVICE done"')
    inst = new_hex_instance_id()
    w = Worker(server.url, creds, ["UPDATE_ALLOW_LISTS"], ["sh", "-c", script], concurrency=1,
               extra_args=["--heartbeat-interval-ms", "100"])
    try:
        op = ops_create(server, creds, "iotda-instance", inst, "UPDATE_ALLOW_LISTS")
        running = wait_for(lambda: (t := show(iotdm, inst, op["operation_id"])).progress == 40 and t,
                           "progress 40")
        assert running.status == "RUNNING" and TIME_RE.match(running.start_time) and running.end_time is None
        release.touch()
        done = status_is(iotdm, inst, op["operation_id"], "SUCCESS")
        assert done.progress == 100 and TIME_RE.match(done.end_time)
    finally:
        release.touch()
        w.stop()


def test_listing_pages_newest_first_at_most_20(server, creds, iotdm):
    inst = new_hex_instance_id()
    plain = [t for t in TYPES if t != "MODIFY"]  # MODIFY needs a target flavour
    ids = [ops_create(server, creds, "iotda-instance", inst, plain[i % len(plain)])["operation_id"]
           for i in range(22)]
    newest = list(reversed(ids))
    first = iotdm.list_instance_tasks(ListInstanceTasksRequest(instance_id=inst, limit=8))
    assert first.page.count == 20
    assert [t.task_id for t in first.tasks] == newest[:8]
    assert first.page.marker == newest[7]
    nxt = iotdm.list_instance_tasks(ListInstanceTasksRequest(instance_id=inst, marker=first.page.marker, limit=500))
    assert [t.task_id for t in nxt.tasks] == newest[8:20]
    off = iotdm.list_instance_tasks(ListInstanceTasksRequest(instance_id=inst, offset=19, limit=1))
    assert [t.task_id for t in off.tasks] == newest[19:20]
    edge = iotdm.list_instance_tasks(ListInstanceTasksRequest(instance_id=inst, offset=500, limit=500))
    assert edge.tasks == []
    default = iotdm.list_instance_tasks(ListInstanceTasksRequest(instance_id=inst))
    assert len(default.tasks) == 10
    # Another instance: its own list.
    other = iotdm.list_instance_tasks(ListInstanceTasksRequest(instance_id=new_hex_instance_id()))
    assert (other.page.count, other.tasks) == (0, [])


@pytest.mark.parametrize("query", [
    dict(offset=501), dict(offset=-1), dict(limit=0), dict(limit=501), dict(marker="xyz"), dict(marker="f" * 33),
])
def test_out_of_range_paging_is_refused(iotdm, query):
    expect_error(lambda: iotdm.list_instance_tasks(
        ListInstanceTasksRequest(instance_id=new_hex_instance_id(), **query)), 400, "IOTDA.000006")


def test_bad_ids_and_other_projects(server, creds, iotdm, new_api):
    inst = new_hex_instance_id()
    op = ops_create(server, creds, "iotda-instance", inst, "DELETE")
    expect_error(lambda: iotdm.list_instance_tasks(ListInstanceTasksRequest(instance_id="NOT-HEX")), 400,
                 "IOTDA.000006")
    expect_error(lambda: show(iotdm, inst, "XYZ"), 400, "IOTDA.000006")
    expect_error(lambda: show(iotdm, inst, "0" * 24), 404, "IOTDA.014200")
    expect_error(lambda: show(iotdm, new_hex_instance_id(), op["operation_id"]), 404, "IOTDA.014200")
    other = server.create_credentials()
    other_client = service_client(IoTDMClient, server.url, other)
    # The instance belongs to the first project: another project's key can't read it ...
    expect_error(lambda: other_client.list_instance_tasks(ListInstanceTasksRequest(instance_id=inst)), 403,
                 "IOTDA.000021")
    # ... and a key can't use another project's path.
    wrong_path = service_client(IoTDMClient, server.url, creds, project_id=other.project_id)
    expect_error(lambda: wrong_path.list_instance_tasks(ListInstanceTasksRequest(instance_id=inst)), 403,
                 "IOTDA.000021")
