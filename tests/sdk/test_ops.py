"""StopBatchTask, ConfirmBatchTask, RetryBatchTask, DeleteBatchTask: effects, per-target results, errors."""

from __future__ import annotations

import pytest
from huaweicloudsdkiotda.v5 import ConfirmBatchTaskRequest, RetryBatchTaskRequest, StopBatchTaskRequest

from taskd_sdk import (
    Worker,
    wait_for,
    E_BAD_JSON,
    E_BAD_STATE,
    E_INVALID,
    E_TARGET_NOT_IN_TASK,
    E_TASK_NOT_FOUND,
    NO_BODY,
    expect_error,
    expected_progress,
    progress,
    target_results,
)

T3 = ["dev_1", "dev_2", "dev_3"]
OPS = ["stop", "retry", "confirm"]


def task_state(api, task_id):
    task = api.show(task_id).batchtask
    return task.status, progress(task)


# ---- stop -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("targets", [NO_BODY, None], ids=["no-body", "empty-object"])
def test_stop_whole_task_then_delete(api, targets):
    task_id = api.create_upgrade(targets=T3).task_id
    resp = api.stop(task_id, targets=targets)
    assert resp.status_code == 200
    assert all(r.status == "success" for r in (resp.targets or [])), target_results(resp)
    assert task_state(api, task_id) == ("Stopped", expected_progress(total=3, stopped=3))
    assert api.status_of(task_id) == dict.fromkeys(T3, "Stopped")

    assert api.delete(task_id).status_code == 204
    expect_error(lambda: api.show(task_id), 404, E_TASK_NOT_FOUND)
    expect_error(lambda: api.delete(task_id), 404, E_TASK_NOT_FOUND)
    assert task_id not in [t.task_id for t in api.list().batchtasks]


def test_stop_some_targets(api):
    task_id = api.create_upgrade(targets=T3).task_id
    resp = api.stop(task_id, targets=["dev_1", "ghost_1"])
    assert resp.status_code == 200
    res = {r.target: r for r in resp.targets}
    assert sorted(res) == ["dev_1", "ghost_1"]
    assert (res["dev_1"].status, res["ghost_1"].status) == ("success", "failure")
    assert res["ghost_1"].error_code == E_TARGET_NOT_IN_TASK
    assert res["ghost_1"].error_msg
    assert not res["dev_1"].error_code
    assert api.status_of(task_id) == {"dev_1": "Stopped", "dev_2": "Waitting", "dev_3": "Waitting"}
    assert task_state(api, task_id) == ("Waitting", expected_progress(total=3, stopped=1, waitting=2))

    again = api.stop(task_id, targets=["dev_1", "dev_2"])  # dev_1 is already Stopped
    assert target_results(again)["dev_1"] == ("failure", E_BAD_STATE)
    assert target_results(again)["dev_2"][0] == "success"
    assert api.status_of(task_id) == {"dev_1": "Stopped", "dev_2": "Stopped", "dev_3": "Waitting"}


def test_stop_result_lists_every_requested_target(api):
    task_id = api.create_upgrade(targets=T3).task_id
    resp = api.stop(task_id, targets=["dev_3", "ghost_1", "dev_2"])
    assert sorted(r.target for r in resp.targets) == ["dev_2", "dev_3", "ghost_1"]


def test_stop_stopped_task_is_403(api):
    task_id = api.create_upgrade(targets=T3).task_id
    api.stop(task_id)
    expect_error(lambda: api.stop(task_id), 403, E_BAD_STATE)
    expect_error(lambda: api.stop(task_id, targets=["dev_1"]), 403, E_BAD_STATE)


@pytest.mark.parametrize("task_type", ["freezeDevices", "moduleUpgrade", "createCommands"])
def test_stop_unsupported_task_type_is_400(api, task_type):
    extra = {"document": {"service_id": "s", "command_name": "c", "paras": {}}} if task_type == "createCommands" else {}
    task_id = api.create_simple(task_type=task_type, targets=["dev_1"], **extra).task_id
    expect_error(lambda: api.stop(task_id), 400, E_INVALID)
    # Not stopped. taskd runs freezeDevices itself, so the registry executor may hold it (Processing) or have
    # failed it (dev_1 doesn't exist) meanwhile; what must not be there is Stopped.
    assert api.status_of(task_id)["dev_1"] in ("Waitting", "Processing", "Fail")


# ---- confirm ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_type", ["firmwareUpgrade", "softwareUpgrade", "moduleUpgrade"])
@pytest.mark.parametrize("targets", [NO_BODY, None], ids=["no-body", "empty-object"])
def test_confirm_whole_task(api, task_type, targets):
    task_id = api.create_upgrade(targets=T3, task_type=task_type, need_confirm=True).task_id
    assert task_state(api, task_id)[0] == "Waitting"
    resp = api.confirm(task_id, targets=targets)
    assert resp.status_code == 200
    assert all(r.status == "success" for r in (resp.targets or [])), target_results(resp)
    # Released to the workers; a sub-task shows Processing once a worker claims it (test_worker.py).
    assert api.status_of(task_id) == dict.fromkeys(T3, "Waitting")
    assert task_state(api, task_id) == ("Waitting", expected_progress(total=3, waitting=3))


def test_confirm_some_targets(api):
    task_id = api.create_upgrade(targets=T3, need_confirm=True).task_id
    resp = api.confirm(task_id, targets=["dev_2", "ghost_1"])
    res = target_results(resp)
    assert res["dev_2"][0] == "success" and not res["dev_2"][1]
    assert res["ghost_1"] == ("failure", E_TARGET_NOT_IN_TASK)
    assert api.status_of(task_id) == dict.fromkeys(T3, "Waitting")
    assert progress(api.show(task_id).batchtask) == expected_progress(total=3, waitting=3)

    again = api.confirm(task_id, targets=["dev_2"])  # already confirmed: confirming again changes nothing
    assert target_results(again) == {"dev_2": ("success", None)}


def test_confirm_stopped_task_is_403(api):
    task_id = api.create_upgrade(targets=T3, need_confirm=True).task_id
    api.stop(task_id)
    expect_error(lambda: api.confirm(task_id), 403, E_BAD_STATE)


@pytest.mark.parametrize("task_type", ["freezeDevices", "createCommands"])
def test_confirm_unsupported_task_type_is_400(api, task_type):
    extra = {"document": {"service_id": "s", "command_name": "c", "paras": {}}} if task_type == "createCommands" else {}
    task_id = api.create_simple(task_type=task_type, targets=["dev_1"], **extra).task_id
    expect_error(lambda: api.confirm(task_id), 400, E_INVALID)
    # See test_stop_unsupported_task_type_is_400: the registry executor may be running it.
    assert api.status_of(task_id)["dev_1"] in ("Waitting", "Processing", "Fail")


# ---- retry ------------------------------------------------------------------------------------------------------


@pytest.fixture
def busy_worker(server, api):
    """Starts a `taskd worker` whose command never ends: what it claims stays Processing."""
    workers = []

    def start(*task_types):
        w = Worker(server.url, api.creds, task_types or ("firmwareUpgrade",), ["sleep", "600"])
        workers.append(w)
        return w

    yield start
    for w in workers:
        w.abort()


def wait_processing(api, task_id, n):
    wait_for(lambda: progress(api.show(task_id).batchtask)["processing"] == n, f"{n} sub-tasks processing")


@pytest.fixture
def confirmed_task_with_stopped_target(api, busy_worker):
    """need_confirm task of 3 targets: dev_1 stopped, dev_2/dev_3 confirmed and claimed by a worker -> Processing."""
    task_id = api.create_upgrade(targets=T3, need_confirm=True).task_id
    assert target_results(api.stop(task_id, targets=["dev_1"]))["dev_1"][0] == "success"
    assert task_state(api, task_id)[0] == "Waitting"
    api.confirm(task_id)
    busy_worker()
    wait_processing(api, task_id, 2)
    assert api.status_of(task_id) == {"dev_1": "Stopped", "dev_2": "Processing", "dev_3": "Processing"}
    assert task_state(api, task_id)[0] == "Processing"
    return task_id


def test_retry_stopped_target(api, confirmed_task_with_stopped_target):
    task_id = confirmed_task_with_stopped_target
    resp = api.retry(task_id, targets=["dev_1", "dev_2", "ghost_1"])
    assert resp.status_code == 200
    res = target_results(resp)
    assert res["dev_1"][0] == "success" and not res["dev_1"][1]
    assert res["dev_2"] == ("failure", E_BAD_STATE)  # Processing sub-tasks are not retried
    assert res["ghost_1"] == ("failure", E_TARGET_NOT_IN_TASK)
    # dev_1 is queued again and the busy worker claims it.
    wait_processing(api, task_id, 3)
    assert api.status_of(task_id) == dict.fromkeys(T3, "Processing")


@pytest.mark.parametrize("targets", [NO_BODY, None], ids=["no-body", "empty-object"])
def test_retry_whole_task(api, confirmed_task_with_stopped_target, targets):
    task_id = confirmed_task_with_stopped_target
    assert api.retry(task_id, targets=targets).status_code == 200
    # dev_1 is queued again; the busy worker may already have claimed it.
    status = api.status_of(task_id)
    assert status["dev_1"] in ("Waitting", "Processing")
    assert (status["dev_2"], status["dev_3"]) == ("Processing", "Processing")


def test_retry_waitting_task_is_403(api):
    task_id = api.create_upgrade(targets=T3).task_id
    expect_error(lambda: api.retry(task_id), 403, E_BAD_STATE)
    expect_error(lambda: api.retry(task_id, targets=["dev_1"]), 403, E_BAD_STATE)


def test_retry_stopped_task_is_403(api):
    task_id = api.create_upgrade(targets=T3).task_id
    api.stop(task_id)
    expect_error(lambda: api.retry(task_id), 403, E_BAD_STATE)
    assert api.status_of(task_id) == dict.fromkeys(T3, "Stopped")


def test_retry_unsupported_task_type_is_400(api, busy_worker):
    # moduleUpgrade can be running (where retry is allowed by status) but is not retryable
    task_id = api.create_upgrade(targets=["dev_1"], task_type="moduleUpgrade", need_confirm=True).task_id
    api.confirm(task_id)
    busy_worker("moduleUpgrade")
    wait_processing(api, task_id, 1)
    assert task_state(api, task_id)[0] == "Processing"
    expect_error(lambda: api.retry(task_id), 400, E_INVALID)


# ---- common to stop / retry / confirm ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS)
def test_op_on_unknown_task_is_404(shared_api, op):
    expect_error(lambda: shared_api.op(op, "ffffffffffffffffffffffff", targets=None), 404, E_TASK_NOT_FOUND)


@pytest.mark.parametrize("op", OPS)
def test_op_rejects_more_than_100_targets(api, op):
    task_id = api.create_upgrade(targets=T3, need_confirm=True).task_id
    expect_error(lambda: api.op(op, task_id, targets=[f"dev_{i}" for i in range(101)]), 400, E_INVALID)
    assert api.status_of(task_id) == dict.fromkeys(T3, "Waitting")


@pytest.mark.parametrize("op", ["stop", "confirm"])
def test_op_accepts_100_targets(api, op):
    task_id = api.create_upgrade(targets=T3, need_confirm=True).task_id
    targets = ["dev_1"] + [f"ghost_{i}" for i in range(99)]
    res = target_results(api.op(op, task_id, targets=targets))
    assert len(res) == 100
    assert res["dev_1"][0] == "success"
    assert all(res[f"ghost_{i}"] == ("failure", E_TARGET_NOT_IN_TASK) for i in range(99))


@pytest.mark.parametrize("op", OPS)
def test_op_rejects_invalid_target(api, op):
    task_id = api.create_upgrade(targets=T3, need_confirm=True).task_id
    expect_error(lambda: api.op(op, task_id, targets=["bad target"]), 400, E_INVALID)


@pytest.mark.parametrize("op", OPS)
def test_op_rejects_body_that_is_not_json(api, op):
    task_id = api.create_upgrade(targets=T3, need_confirm=True).task_id
    req_cls = {"stop": StopBatchTaskRequest, "retry": RetryBatchTaskRequest, "confirm": ConfirmBatchTaskRequest}[op]
    req = req_cls(task_id=task_id, body="{not json")  # the SDK sends a str body verbatim
    expect_error(lambda: getattr(api.client, f"{op}_batch_task")(req), 400, E_BAD_JSON)


# ---- delete -----------------------------------------------------------------------------------------------------


def test_delete_waitting_task_is_403(api):
    task_id = api.create_upgrade(targets=T3).task_id
    expect_error(lambda: api.delete(task_id), 403, E_BAD_STATE)
    assert api.show(task_id).batchtask.status == "Waitting"


def test_delete_processing_task_is_403(api):
    task_id = api.create_upgrade(targets=T3, need_confirm=True).task_id
    api.confirm(task_id)
    expect_error(lambda: api.delete(task_id), 403, E_BAD_STATE)


@pytest.mark.parametrize("task_id", ["ffffffffffffffffffffffff", "abc"])
def test_delete_unknown_task_is_404(shared_api, task_id):
    expect_error(lambda: shared_api.delete(task_id), 404, E_TASK_NOT_FOUND)


def test_delete_invalid_task_id_is_400(shared_api):
    expect_error(lambda: shared_api.delete("not-a-task"), 400, E_INVALID)
