"""Data survives a graceful restart (SIGTERM, start again on the same data dir) and a crash (SIGKILL). Uses its own
server."""

from __future__ import annotations

import pytest
from huaweicloudsdkiotda.v5 import ListDevicesRequest

from taskd_sdk import (
    DEVICE_FILE_HEADER,
    Api,
    TaskdServer,
    device_rows,
    expected_progress,
    progress,
    wait_for,
    write_xlsx,
)


@pytest.fixture
def own_server(tmp_path):
    srv = TaskdServer(tmp_path / "data", name="taskd-restart")
    srv.start()
    yield srv
    srv.stop()
    srv.drop_database()


def test_data_survives_restart(own_server, tmp_path):
    srv = own_server
    creds = srv.create_credentials()
    api = Api(srv.url, creds)
    t1 = api.create_upgrade(targets=["dev_1", "dev_2", "dev_3"], need_confirm=True, app_id="app_r").task_id
    api.stop(t1, targets=["dev_1"])
    api.confirm(t1, targets=["dev_2"])
    t2 = api.create_simple().task_id
    f1 = api.upload(write_xlsx(tmp_path / "keep.xlsx", DEVICE_FILE_HEADER, list(device_rows(2)))).file_id
    before = api.show(t1)

    rc = srv.stop()
    assert rc == 0, f"taskd did not exit cleanly on SIGTERM (exit code {rc})"
    srv.start()

    api = Api(srv.url, creds)  # new port, same key (created with the CLI before the restart)
    after = api.show(t1)
    assert after.batchtask.status == before.batchtask.status
    assert progress(after.batchtask) == progress(before.batchtask) == expected_progress(
        total=3, waitting=2, stopped=1)
    assert after.batchtask.create_time == before.batchtask.create_time
    assert after.batchtask.task_name == before.batchtask.task_name
    assert after.batchtask.need_confirm is True
    assert [(d.target, d.status) for d in after.task_details] == [
        ("dev_3", "Waitting"), ("dev_2", "Waitting"), ("dev_1", "Stopped")]
    assert [t.task_id for t in api.list().batchtasks] == [t2, t1]
    assert [t.task_id for t in api.list(app_id="app_r").batchtasks] == [t1]
    assert [f.file_id for f in api.list_files().files] == [f1]

    # ids keep growing after a restart
    t3 = api.create_simple().task_id
    assert t3 > t2

    b = srv.bootstrap  # the bootstrap credential is still valid
    assert Api(srv.url, b).list().status_code == 200


def test_kill_9_midway_loses_nothing_and_repeats_nothing(own_server, tmp_path):
    """The embedded store under `kill -9` while taskd's registry executor creates 4,000 devices: after a restart on
    the same data dir the task carries on (the dead process's leases expire and its sub-tasks run again), and every
    device is created exactly once: a second creation would fail its sub-task, the device would exist."""
    srv = own_server
    creds = srv.create_credentials()
    api = Api(srv.url, creds)
    sheet = write_xlsx(tmp_path / "fleet.xlsx", ["node_id", "product_id"], [[f"n{i}", "p"] for i in range(4000)])
    task_id = api.create({"task_name": "fleet", "task_type": "createDevices",
                          "document_source": api.upload(sheet).file_id}).task_id
    at_kill = wait_for(lambda: (lambda p: p if p["success"] > 0 else None)(progress(api.show(task_id).batchtask)),
                       "the first devices", deadline_s=60)
    srv.kill()
    assert at_kill["success"] < 4000, f"finished before the kill: {at_kill}"

    srv.start()
    api = Api(srv.url, creds)
    task = wait_for(lambda: (lambda t: t if t.status in ("Success", "Fail", "PartialSuccess") else None)(
        api.show(task_id).batchtask), "the task to finish after the restart", deadline_s=180)
    assert task.status == "Success", progress(task)
    assert progress(task) == expected_progress(total=4000, success=4000)
    assert api.client.list_devices(ListDevicesRequest(limit=1)).page.count == 4000
