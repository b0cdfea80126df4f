"""UploadBatchTaskFile, ListBatchTaskFiles, DeleteBatchTaskFile, and tasks created from a file (document_source)."""

from __future__ import annotations

import os

import pytest
from huaweicloudsdkiotda.v5 import ShowDeviceRequest, UploadBatchTaskFileRequest, UploadBatchTaskFileRequestBody

from taskd_sdk import (
    wait_for,
    DEVICE_FILE_HEADER,
    E_FILE_EMPTY,
    E_FILE_LIMIT,
    E_FILE_NAME_TOO_LONG,
    E_FILE_NOT_FOUND,
    E_FILE_TOO_MANY_ROWS,
    E_FILE_TYPE,
    E_FILE_UNREADABLE,
    E_INVALID,
    FILE_ID_RE,
    TIME_RE,
    device_rows,
    expect_error,
    expected_progress,
    progress,
    raw_json,
    write_xls,
    write_xlsx,
)

WRITERS = {"xlsx": write_xlsx, "xls": write_xls}


def sheet(tmp_path, name, rows=None, header=DEVICE_FILE_HEADER):
    """A spreadsheet named `name` (its extension picks the format)."""
    ext = name.rsplit(".", 1)[-1]
    rows = list(device_rows(3)) if rows is None else rows
    return WRITERS[ext](tmp_path / name, header, rows)


def file_names(api, instance_id=None):
    return [f.file_name for f in (api.list_files(instance_id=instance_id).files or [])]


@pytest.mark.parametrize("ext", ["xlsx", "xls"])
def test_upload_list_delete(api, tmp_path, ext):
    path = sheet(tmp_path, f"devices.{ext}")
    up = api.upload(path)
    assert up.status_code == 201
    assert FILE_ID_RE.match(up.file_id or ""), up.file_id
    assert up.file_name == f"devices.{ext}"
    assert TIME_RE.match(up.upload_time or ""), up.upload_time

    files = api.list_files().files
    assert [(f.file_id, f.file_name, f.upload_time) for f in files] == [(up.file_id, up.file_name, up.upload_time)]

    assert api.delete_file(up.file_id).status_code == 204
    assert api.list_files().files == []
    expect_error(lambda: api.delete_file(up.file_id), 404, E_FILE_NOT_FOUND)


def test_empty_file_list(api):
    resp = api.list_files()
    assert resp.status_code == 200
    assert resp.files == []
    assert raw_json(resp)["files"] == []


def test_files_are_listed_newest_first(api, tmp_path):
    ids = [api.upload(sheet(tmp_path, f"batch_{n}.xlsx")).file_id for n in "abc"]
    assert len(set(ids)) == 3
    files = api.list_files().files
    assert [f.file_name for f in files] == ["batch_c.xlsx", "batch_b.xlsx", "batch_a.xlsx"]
    assert [f.file_id for f in files] == ids[::-1]


def test_at_most_10_files_per_project(api, tmp_path):
    ids = [api.upload(sheet(tmp_path, f"f_{i}.xlsx")).file_id for i in range(10)]
    expect_error(lambda: api.upload(sheet(tmp_path, "f_10.xlsx")), 403, E_FILE_LIMIT)
    assert len(api.list_files().files) == 10
    api.delete_file(ids[0])
    assert api.upload(sheet(tmp_path, "f_11.xlsx")).status_code == 201
    names = file_names(api)
    assert len(names) == 10 and names[0] == "f_11.xlsx" and "f_0.xlsx" not in names and "f_10.xlsx" not in names


@pytest.mark.parametrize("name,content", [
    pytest.param("devices.csv", b"node_id,product_id\nn1,p1\n", id="csv"),
    pytest.param("devices.txt", b"node_id product_id\n", id="txt"),
    pytest.param("devices", b"node_id,product_id\nn1,p1\n", id="no-extension"),
    pytest.param("devices.xlsx.csv", b"node_id,product_id\nn1,p1\n", id="xlsx-then-csv"),
    pytest.param("devices.json", b'{"node_id": "n1"}', id="json"),
])
def test_upload_rejects_other_file_types(shared_api, tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    expect_error(lambda: shared_api.upload(path), 400, E_FILE_TYPE)


@pytest.mark.parametrize("name", ["broken.xlsx", "broken.xls"])
def test_upload_rejects_unreadable_spreadsheet(shared_api, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04 this is not a spreadsheet " + os.urandom(256))
    expect_error(lambda: shared_api.upload(path), 400, E_FILE_UNREADABLE)


def test_upload_rejects_more_than_30000_rows(plain_api, big_sheets):
    expect_error(lambda: plain_api.upload(big_sheets[30001]), 400, E_FILE_TOO_MANY_ROWS)
    assert plain_api.list_files().files == []


def test_upload_accepts_30000_rows(plain_api, big_sheets):
    up = plain_api.upload(big_sheets[30000])
    assert up.status_code == 201
    assert file_names(plain_api) == ["rows30000.xlsx"]


def test_upload_rejects_file_name_over_60_chars(shared_api, tmp_path):
    name = "n" * 56 + ".xlsx"  # 61 characters
    expect_error(lambda: shared_api.upload(sheet(tmp_path, name)), 400, E_FILE_NAME_TOO_LONG)


def test_upload_accepts_file_name_of_60_chars(api, tmp_path):
    name = "n" * 55 + ".xlsx"  # 60 characters
    up = api.upload(sheet(tmp_path, name))
    assert up.status_code == 201
    assert up.file_name == name


@pytest.mark.parametrize("ext", ["xlsx", "xls"])
@pytest.mark.parametrize("header", [DEVICE_FILE_HEADER, None], ids=["header-only", "empty-sheet"])
def test_upload_rejects_spreadsheet_without_data(shared_api, tmp_path, ext, header):
    path = WRITERS[ext](tmp_path / f"empty.{ext}", header, [])
    expect_error(lambda: shared_api.upload(path), 400, E_FILE_EMPTY)


def test_upload_without_file_part_is_400(shared_api):
    req = UploadBatchTaskFileRequest(body=UploadBatchTaskFileRequestBody(file=None))
    expect_error(lambda: shared_api.client.upload_batch_task_file(req), 400, E_INVALID)


def test_rejected_uploads_are_not_kept(api, tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_bytes(b"a,b\n")
    expect_error(lambda: api.upload(bad), 400, E_FILE_TYPE)
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"not a zip")
    expect_error(lambda: api.upload(broken), 400, E_FILE_UNREADABLE)
    expect_error(lambda: api.upload(sheet(tmp_path, "n" * 61 + ".xlsx")), 400, E_FILE_NAME_TOO_LONG)
    expect_error(lambda: api.upload(WRITERS["xlsx"](tmp_path / "e.xlsx", DEVICE_FILE_HEADER, [])), 400, E_FILE_EMPTY)
    assert api.list_files().files == []


@pytest.mark.parametrize("file_id", ["no_such_file", "0c3c77dd-42a2-4309-9e10-da2e8bf64ac3"])
def test_delete_unknown_file_is_404(shared_api, file_id):
    expect_error(lambda: shared_api.delete_file(file_id), 404, E_FILE_NOT_FOUND)


def test_delete_file_with_invalid_id_is_400(shared_api):
    expect_error(lambda: shared_api.delete_file("f" * 129), 400, E_INVALID)


# ---- tasks from files -------------------------------------------------------------------------------------------


ROWS = [  # node_id, product_id, device_id, device_name, description, app_id, secret, gateway_id
    ["node_1", "prod_1", "dev_a", "name_1", "first", None, None, None],
    ["node_2", "prod_1", None, "name_2", None, None, "secret_2xxxxxxx", None],
    ["node_3", "prod_1", "dev_c", None, None, None, None, None],
]


@pytest.mark.parametrize("ext", ["xlsx", "xls"])
def test_create_devices_task_from_file(api, tmp_path, ext):
    file_id = api.upload(sheet(tmp_path, f"new_devices.{ext}", rows=ROWS)).file_id
    resp = api.create({"task_name": "create_devs", "task_type": "createDevices", "document_source": file_id})
    assert resp.status_code == 201
    assert resp.task_type == "createDevices"
    assert resp.status == "Waitting"
    assert progress(resp) == expected_progress(total=3, waitting=3)

    # taskd runs createDevices itself: every row becomes a device.
    wait_for(lambda: api.show(resp.task_id).batchtask.status == "Success", "the createDevices task to succeed")
    shown = api.show(resp.task_id)
    # one sub-task per data row; target = device_id if set, else node_id; newest (last row) first
    assert [(d.target, d.status) for d in shown.task_details] == [
        ("dev_c", "Success"), ("node_2", "Success"), ("dev_a", "Success")]
    assert shown.page.count == 3
    assert progress(shown.batchtask) == expected_progress(total=3, success=3)
    # node_2 had no device_id: it defaults to {product_id}_{node_id}.
    for device_id in ("dev_a", "prod_1_node_2", "dev_c"):
        assert api.client.show_device(ShowDeviceRequest(device_id=device_id)).device_id == device_id


def test_update_devices_task_from_file(api, tmp_path):
    file_id = api.upload(sheet(tmp_path, "upd.xlsx", rows=ROWS)).file_id
    resp = api.create({"task_name": "update_devs", "task_type": "updateDevices", "document_source": file_id})
    assert resp.status_code == 201
    assert progress(resp)["total"] == 3


def test_create_from_deleted_file_is_400(api, tmp_path):
    file_id = api.upload(sheet(tmp_path, "gone.xlsx")).file_id
    api.delete_file(file_id)
    expect_error(lambda: api.create({"task_name": "x", "task_type": "createDevices", "document_source": file_id}),
                 400, E_INVALID)
