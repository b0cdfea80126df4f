"""Authentication and authorisation as the SDK does it: plain and derived AK/SK, IAM project discovery, bad keys,
stale dates, revoked keys, cross-project access, X-Request-Id, and the credentials CLI."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkiotda.v5 import (
    CreateBatchTaskRequest,
    ListBatchTasksRequest,
    ShowBatchTaskRequest,
)

from taskd_sdk import (
    E_AUTH,
    E_FORBIDDEN_PROJECT,
    E_TASK_NOT_FOUND,
    Api,
    Creds,
    expect_error,
    http_get,
    make_client,
    new_ak,
    new_project_id,
    new_sk,
    sdk_time,
    utc_now,
)


def test_key_works_end_to_end(api):
    """Create, list and show with the module's auth mode (plain SDK-HMAC-SHA256 or derived V11-HMAC-SHA256)."""
    task_id = api.create_simple().task_id
    assert [t.task_id for t in api.list().batchtasks] == [task_id]
    assert api.show(task_id).batchtask.task_id == task_id


def test_bootstrap_credential_works(server, auth_mode):
    b = server.bootstrap
    api = Api(server.url, Creds(b.project_id, b.ak, b.sk), auth_mode)
    assert api.list().status_code == 200


def test_project_id_discovery_via_iam(server, creds, auth_mode):
    """BasicCredentials without project id: the SDK asks GET /v3/projects?name=<region> first."""
    cred = BasicCredentials(creds.ak, creds.sk).with_iam_endpoint(server.url)
    client = make_client(server.url, cred, auth_mode)
    assert cred.project_id == creds.project_id
    resp = client.list_batch_tasks(ListBatchTasksRequest())
    assert resp.status_code == 200 and resp.batchtasks == []
    # and the discovered project is the key's project: a task created through it is visible with the plain set-up
    created = client.create_batch_task(CreateBatchTaskRequest(body={
        "task_name": "via_iam", "task_type": "freezeDevices", "targets": ["dev_1"]}))
    assert Api(server.url, creds).show(created.task_id).batchtask.task_name == "via_iam"


def _show_with_date(api, date):
    req = ShowBatchTaskRequest(task_id="ffffffffffffffffffffffff")
    return api.client.show_batch_task_invoker(req).add_header("X-Sdk-Date", date).invoke()


def test_wrong_secret_key_is_401(server, creds, auth_mode):
    bad = Api(server.url, Creds(creds.project_id, creds.ak, creds.sk + "x"), auth_mode)
    expect_error(lambda: bad.list(), 401, E_AUTH)
    expect_error(lambda: bad.create_simple(), 401, E_AUTH)


def test_unknown_access_key_is_401(server, auth_mode):
    ghost = Api(server.url, Creds(new_project_id(), new_ak(), new_sk()), auth_mode)
    expect_error(lambda: ghost.list(), 401, E_AUTH)
    expect_error(lambda: ghost.list_files(), 401, E_AUTH)


@pytest.mark.parametrize("offset", [timedelta(days=-2000), timedelta(minutes=-20), timedelta(minutes=20)],
                         ids=["2020", "20-min-ago", "20-min-ahead"])
def test_stale_or_future_sdk_date_is_401(api, offset):
    date = "20200101T000000Z" if offset.days < -1000 else sdk_time(utc_now() + offset)
    expect_error(lambda: _show_with_date(api, date), 401, E_AUTH)


def test_sdk_date_within_15_minutes_is_accepted(api):
    task_id = api.create_simple().task_id
    req = ShowBatchTaskRequest(task_id=task_id)
    date = sdk_time(utc_now() - timedelta(minutes=5))
    resp = api.client.show_batch_task_invoker(req).add_header("X-Sdk-Date", date).invoke()
    assert resp.batchtask.task_id == task_id


def test_unsigned_request_is_401(api):
    """An Authorization header the SDK did not compute (the SDK then skips signing)."""
    req = ListBatchTasksRequest()
    expect_error(lambda: api.client.list_batch_tasks_invoker(req).add_header("Authorization", "Bearer xyz").invoke(),
                 401, E_AUTH)


def test_revoked_key_is_401(server, auth_mode):
    creds = server.create_credentials()
    api = Api(server.url, creds, auth_mode)
    assert api.list().status_code == 200
    server.revoke_credentials(creds.ak)
    expect_error(lambda: api.list(), 401, E_AUTH)
    expect_error(lambda: api.create_simple(), 401, E_AUTH)


def test_other_key_of_same_project_keeps_working_after_revoke(server, auth_mode):
    a = server.create_credentials()
    b = server.create_credentials(project_id=a.project_id)
    api_a, api_b = Api(server.url, a, auth_mode), Api(server.url, b, auth_mode)
    task_id = api_a.create_simple().task_id
    server.revoke_credentials(a.ak)
    expect_error(lambda: api_a.show(task_id), 401, E_AUTH)
    assert api_b.show(task_id).batchtask.task_id == task_id  # same project, same tasks


@pytest.mark.parametrize("call", ["list", "show", "create", "list_files"])
def test_key_of_project_a_on_project_b_is_403(server, creds, auth_mode, call):
    other = server.create_credentials()
    cross = Api(server.url, creds, auth_mode, path_project_id=other.project_id)
    calls = {
        "list": lambda: cross.list(),
        "show": lambda: cross.show("ffffffffffffffffffffffff"),
        "create": lambda: cross.create_simple(),
        "list_files": lambda: cross.list_files(),
    }
    expect_error(calls[call], 403, E_FORBIDDEN_PROJECT)
    assert Api(server.url, other, auth_mode).list().batchtasks == []


def test_unknown_project_with_valid_key_is_403(server, creds, auth_mode):
    cross = Api(server.url, creds, auth_mode, path_project_id=new_project_id())
    expect_error(lambda: cross.list(), 403, E_FORBIDDEN_PROJECT)


def test_error_responses_carry_request_id(api):
    e = expect_error(lambda: api.show("ffffffffffffffffffffffff"), 404, E_TASK_NOT_FOUND)
    assert e.request_id.strip()


def test_every_response_carries_x_request_id(server):
    status, headers, _ = http_get(server.url + "/healthz")
    assert status == 200
    assert headers.get("X-Request-Id")
    status, headers, body = http_get(f"{server.url}/v5/iot/{new_project_id()}/batchtasks")  # unsigned
    assert status == 401
    assert headers.get("X-Request-Id")
    err = json.loads(body)
    assert err["error_code"] == E_AUTH and err["error_msg"]


def test_credentials_cli_list_never_shows_secret_keys(server):
    a = server.create_credentials()
    b = server.create_credentials()
    listed, text = server.list_credentials()
    assert isinstance(listed, list)
    aks = {e.get("access_key") for e in listed}
    assert {a.ak, b.ak, server.bootstrap.ak} <= aks
    entry = next(e for e in listed if e.get("access_key") == a.ak)
    assert entry.get("project_id") == a.project_id
    for secret in (a.sk, b.sk, server.bootstrap.sk):
        assert secret not in text
    assert all("secret_key" not in e for e in listed)
