"""Data survives a graceful restart (SIGTERM, start again on the same data dir). Uses its own server."""

from __future__ import annotations

import pytest

from taskd_sdk import (
    DEVICE_FILE_HEADER,
    Api,
    TaskdServer,
    device_rows,
    expected_progress,
    progress,
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
