"""DMS for RabbitMQ background tasks (RabbitMQClient): operations recorded with `taskd ops create`, run by a real
`taskd worker`, listed, shown and deleted with the official SDK."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from huaweicloudsdkrabbitmq.v2 import (
    DeleteBackgroundTaskRequest,
    ListBackgroundTasksRequest,
    RabbitMQClient,
    ShowBackgroundTaskRequest,
)

from taskd_sdk import (
    OPS_SCRIPT, Worker, expect_error, ops_cli, ops_create, raw_json, service_client, utc_now, wait_for,
)

TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
NAME = "bindInstancePublicIp"


@pytest.fixture
def dms(server, creds):
    return service_client(RabbitMQClient, server.url, creds)


def new_instance() -> str:
    return str(uuid.uuid4())


def listed(client, inst, **q):
    return client.list_background_tasks(ListBackgroundTasksRequest(instance_id=inst, **q))


def test_tasks_are_listed_shown_run_and_deleted(server, creds, dms):
    inst = new_instance()
    params = {"public_ip_id": "06a13350-4305-4338-9f0e-6b322bb1413d", "enable_public_ip": True}
    ids = [ops_create(server, creds, "rabbitmq", inst, NAME, params=params, user_name="dms_test",
                      user_id="u-0001")["operation_id"] for _ in range(3)]
    resp = listed(dms, inst)
    assert raw_json(resp)["task_count"] == "3"
    assert [t.id for t in resp.tasks] == list(reversed(ids))
    t = resp.tasks[0]
    assert (t.name, t.status, t.user_name, t.user_id) == (NAME, "CREATED", "dms_test", "u-0001")
    assert json.loads(t.params) == params
    assert TIME_RE.match(t.created_at) and TIME_RE.match(t.updated_at)
    shown = dms.show_background_task(ShowBackgroundTaskRequest(instance_id=inst, task_id=ids[0]))
    assert shown.task_count == "1" and [x.id for x in shown.tasks] == [ids[0]]
    # Only a finished task can be deleted.
    expect_error(lambda: dms.delete_background_task(DeleteBackgroundTaskRequest(instance_id=inst, task_id=ids[0])),
                 409, "DMS.00409000")
    worker = Worker(server.url, creds, [NAME], ["sh", "-c", OPS_SCRIPT])
    try:
        wait_for(lambda: all(x.status == "SUCCESS" for x in listed(dms, inst).tasks), "all tasks SUCCESS")
    finally:
        worker.stop()
    resp = dms.delete_background_task(DeleteBackgroundTaskRequest(instance_id=inst, task_id=ids[0]))
    assert resp.status_code == 204
    expect_error(lambda: dms.show_background_task(ShowBackgroundTaskRequest(instance_id=inst, task_id=ids[0])),
                 404, "DMS.00404022")
    assert listed(dms, inst).task_count == "2"


def test_failures_are_reported(server, creds, dms):
    inst = new_instance()
    op = ops_create(server, creds, "rabbitmq", inst, NAME, target="bad-ip")
    worker = Worker(server.url, creds, [NAME], ["sh", "-c", OPS_SCRIPT])
    try:
        wait_for(lambda: listed(dms, inst).tasks[0].status == "FAILED", "task FAILED")
    finally:
        worker.stop()
    dms.delete_background_task(DeleteBackgroundTaskRequest(instance_id=inst, task_id=op["operation_id"]))


def test_paging_and_time_filters(server, creds, dms):
    inst = new_instance()
    ids = [ops_create(server, creds, "rabbitmq", inst, NAME)["operation_id"] for _ in range(5)]
    newest = list(reversed(ids))
    assert [t.id for t in listed(dms, inst, start=2, limit=2).tasks] == newest[1:3]
    assert [t.id for t in listed(dms, inst, start=1, limit=1).tasks] == newest[:1]
    assert listed(dms, inst, start=6, limit=10).tasks == []
    assert len(listed(dms, inst, limit=100).tasks) == 5
    now = utc_now()
    today = now.strftime("%Y%m%d")
    within = listed(dms, inst, begin_time=today + "000000", end_time=today + "235959")
    assert within.task_count == "5"
    later = listed(dms, inst, begin_time=(now.replace(year=now.year + 1)).strftime("%Y%m%d%H%M%S"))
    assert (later.task_count, later.tasks) == ("0", [])
    # The control plane's view of the same operations (`taskd ops list`).
    out = json.loads(ops_cli(server, creds, "list", "--service", "rabbitmq", "--instance-id", inst, "--limit", "3",
                             "--json").stdout)
    assert out["count"] == 5 and [o["operation_id"] for o in out["operations"]] == newest[:3]
    assert all(o["state"] == "waiting" and o["instance_id"] == inst for o in out["operations"])
    text = ops_cli(server, creds, "list", "--service", "rabbitmq", "--instance-id", inst).stdout
    assert text.startswith("5 operation(s)") and newest[0] in text


def test_the_cli_refuses_bad_operations_and_writes_nothing(server, creds, dms):
    inst = new_instance()
    res = ops_cli(server, creds, "create", "--service", "rabbitmq", "--instance-id", inst, "--type", "bind-ip",
                  check=False)
    assert res.returncode != 0 and "TASKD.000006" in res.stderr, res.stderr
    res = ops_cli(server, creds, "create", "--service", "rabbitmq", "--instance-id", inst, "--type", "x",
                  "--window", "25:00-01:00", check=False)
    assert res.returncode != 0 and "TASKD.000006" in res.stderr, res.stderr
    assert listed(dms, inst).task_count == "0"


@pytest.mark.parametrize("query,code", [
    (dict(limit=0), "DMS.00400000"), (dict(limit=101), "DMS.00400000"), (dict(start=-1), "DMS.00400000"),
    (dict(begin_time="2026-01-01"), "DMS.00400001"), (dict(end_time="20261301000000"), "DMS.00400001"),
    (dict(begin_time="20260102000000", end_time="20260101000000"), "DMS.00400001"),
])
def test_bad_queries_are_refused(dms, query, code):
    expect_error(lambda: listed(dms, new_instance(), **query), 400, code)


def test_ids_instances_and_projects_are_isolated(server, creds, dms):
    inst = new_instance()
    op = ops_create(server, creds, "rabbitmq", inst, NAME)
    expect_error(lambda: dms.show_background_task(ShowBackgroundTaskRequest(instance_id=inst, task_id="nope")), 400,
                 "DMS.00400000")
    expect_error(lambda: dms.show_background_task(
        ShowBackgroundTaskRequest(instance_id=new_instance(), task_id=op["operation_id"])), 404, "DMS.00404022")
    other = server.create_credentials()
    other_client = service_client(RabbitMQClient, server.url, other)
    expect_error(lambda: listed(other_client, inst), 403, "DMS.00403000")
    wrong_path = service_client(RabbitMQClient, server.url, creds, project_id=other.project_id)
    expect_error(lambda: listed(wrong_path, inst), 403, "DMS.00403000")
