"""Scoping: two projects never see each other's tasks or files; the Instance-Id header scopes tasks and files."""

from __future__ import annotations

import pytest

from taskd_sdk import (
    DEVICE_FILE_HEADER,
    E_FILE_NOT_FOUND,
    E_INVALID,
    E_TASK_NOT_FOUND,
    device_rows,
    expect_error,
    new_instance_id,
    write_xlsx,
)

OTHER_TASK_CALLS = {
    "show": lambda a, t, i: a.show(t, instance_id=i),
    "delete": lambda a, t, i: a.delete(t, instance_id=i),
    "stop": lambda a, t, i: a.stop(t, instance_id=i),
    "retry": lambda a, t, i: a.retry(t, instance_id=i),
    "confirm": lambda a, t, i: a.confirm(t, targets=None, instance_id=i),
}


def xlsx(tmp_path, name="devices.xlsx"):
    return write_xlsx(tmp_path / name, DEVICE_FILE_HEADER, list(device_rows(2)))


# ---- projects ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", sorted(OTHER_TASK_CALLS))
def test_other_projects_task_is_404(api, new_api, call):
    other = new_api()
    task_id = other.create_upgrade(need_confirm=True).task_id
    expect_error(lambda: OTHER_TASK_CALLS[call](api, task_id, None), 404, E_TASK_NOT_FOUND)
    # untouched in its own project
    task = other.show(task_id).batchtask
    assert task.status == "Waitting" and task.task_progress.waitting == 3


def test_projects_do_not_see_each_others_tasks(api, new_api):
    other = new_api()
    mine = api.create_simple().task_id
    theirs = other.create_simple().task_id
    assert [t.task_id for t in api.list().batchtasks] == [mine]
    assert [t.task_id for t in other.list().batchtasks] == [theirs]
    assert api.list().page.count == 1


def test_projects_do_not_see_each_others_files(api, new_api, tmp_path):
    other = new_api()
    theirs = other.upload(xlsx(tmp_path, "theirs.xlsx")).file_id
    assert api.list_files().files == []
    expect_error(lambda: api.delete_file(theirs), 404, E_FILE_NOT_FOUND)
    expect_error(lambda: api.create({"task_name": "steal", "task_type": "createDevices", "document_source": theirs}),
                 400, E_INVALID)
    assert [f.file_id for f in other.list_files().files] == [theirs]


def test_file_limit_is_per_project(api, new_api, tmp_path):
    other = new_api()
    for i in range(10):
        other.upload(xlsx(tmp_path, f"o_{i}.xlsx"))
    assert api.upload(xlsx(tmp_path, "mine.xlsx")).status_code == 201


# ---- Instance-Id ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", sorted(OTHER_TASK_CALLS))
@pytest.mark.parametrize("created_in,asked_in", [("x", "y"), ("x", None), (None, "x")],
                         ids=["other-instance", "instance-task-without-header", "plain-task-with-header"])
def test_task_is_invisible_from_another_instance(api, call, created_in, asked_in):
    inst = {"x": new_instance_id(), "y": new_instance_id(), None: None}
    task_id = api.create_upgrade(need_confirm=True, instance_id=inst[created_in]).task_id
    expect_error(lambda: OTHER_TASK_CALLS[call](api, task_id, inst[asked_in]), 404, E_TASK_NOT_FOUND)
    assert api.show(task_id, instance_id=inst[created_in]).batchtask.status == "Waitting"


def test_instance_scoped_listing(api):
    x, y = new_instance_id(), new_instance_id()
    in_x = api.create_simple(instance_id=x).task_id
    in_y = api.create_simple(instance_id=y).task_id
    plain = api.create_simple().task_id
    for inst, expected in ((x, [in_x]), (y, [in_y]), (None, [plain])):
        resp = api.list(instance_id=inst)
        assert [t.task_id for t in resp.batchtasks] == expected, inst
        assert resp.page.count == 1


def test_instance_scoped_task_lifecycle(api):
    x = new_instance_id()
    task_id = api.create_upgrade(targets=["dev_1", "dev_2"], need_confirm=True, instance_id=x).task_id
    assert api.show(task_id, instance_id=x).batchtask.task_id == task_id
    assert [d.target for d in api.show(task_id, instance_id=x).task_details] == ["dev_2", "dev_1"]
    api.confirm(task_id, targets=["dev_1"], instance_id=x)
    api.stop(task_id, instance_id=x)
    assert api.show(task_id, instance_id=x).batchtask.status == "Stopped"
    assert api.delete(task_id, instance_id=x).status_code == 204
    expect_error(lambda: api.show(task_id, instance_id=x), 404, E_TASK_NOT_FOUND)


def test_instance_scoped_files(api, tmp_path):
    x, y = new_instance_id(), new_instance_id()
    fx = api.upload(xlsx(tmp_path, "in_x.xlsx"), instance_id=x).file_id
    fp = api.upload(xlsx(tmp_path, "plain.xlsx")).file_id
    assert [f.file_id for f in api.list_files(instance_id=x).files] == [fx]
    assert [f.file_id for f in api.list_files().files] == [fp]
    assert api.list_files(instance_id=y).files == []
    expect_error(lambda: api.delete_file(fx), 404, E_FILE_NOT_FOUND)
    expect_error(lambda: api.delete_file(fx, instance_id=y), 404, E_FILE_NOT_FOUND)
    # a file is a task source only inside its own instance
    expect_error(lambda: api.create({"task_name": "t", "task_type": "createDevices", "document_source": fx}),
                 400, E_INVALID)
    created = api.create({"task_name": "t", "task_type": "createDevices", "document_source": fx}, instance_id=x)
    assert created.task_progress.total == 2
    assert api.delete_file(fx, instance_id=x).status_code == 204


def test_file_limit_is_per_instance(api, tmp_path):
    x = new_instance_id()
    for i in range(10):
        api.upload(xlsx(tmp_path, f"x_{i}.xlsx"), instance_id=x)
    assert api.upload(xlsx(tmp_path, "plain.xlsx")).status_code == 201
