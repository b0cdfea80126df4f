"""The legacy IoT northbound API v1.5.0 end to end against a real `taskd serve`: an app made with
`taskd apps create` logs in, creates a firmware upgrade task, a real `taskd worker` runs it, and the app reads
the task, its sub-tasks and the task list. No official client exists in the new SDK family, so this speaks
HTTP as the legacy northbound SDKs do (form-encoded login, `app_key` + `Authorization: Bearer`)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import requests
from huaweicloudsdkiotda.v5 import AddDevice, AddDeviceRequest

from taskd_sdk import TASKD_BIN

OPS = "/iodm/northbound/v1.5.0/operations"
SCRIPT = '[ "$TASKD_TARGET" != legacy_bad ] || { echo "flash failed" >&2; exit 3; }; echo "done $TASKD_TARGET"'


def apps_cli(server, *args):
    cmd = [str(TASKD_BIN), "apps", *args, *server.store_args()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, f"{' '.join(cmd)} exited {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.fixture
def legacy_app(server, creds):
    out = json.loads(apps_cli(server, "create", "--project-id", creds.project_id, "--json"))
    assert out["project_id"] == creds.project_id and out["app_id"] and out["secret"]
    return out


def login(server, app):
    r = requests.post(f"{server.url}/iocm/app/sec/v1.1.0/login",
                      data={"appId": app["app_id"], "secret": app["secret"]}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tokenType"] == "bearer" and body["expiresIn"] == 3600 and body["scope"] == "default"
    return body


class Na:
    def __init__(self, server, app):
        self.server, self.app = server, app
        self.token = login(server, app)["accessToken"]

    def headers(self):
        return {"app_key": self.app["app_id"], "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json"}

    def get(self, path, **params):
        return requests.get(f"{self.server.url}{path}", params=params, headers=self.headers(), timeout=10)

    def post(self, path, body):
        return requests.post(f"{self.server.url}{path}", json=body, headers=self.headers(), timeout=10)

    def put(self, path):
        return requests.put(f"{self.server.url}{path}", headers=self.headers(), timeout=10)


@pytest.fixture
def worker(server, creds):
    procs = []

    def start():
        proc = subprocess.Popen(
            [str(TASKD_BIN), "worker", "--endpoint", server.url, "--ak", creds.ak, "--sk", creds.sk,
             "--project-id", creds.project_id, "--task-type", "firmwareUpgrade", "--concurrency", "4",
             "--", "sh", "-c", SCRIPT],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_login_create_run_and_read(server, creds, plain_api, legacy_app, worker):
    for node in ("ok1", "ok2", "bad"):
        plain_api.client.add_device(AddDeviceRequest(body=AddDevice(node_id=node, product_id="legacy",
                                                                    device_id=f"legacy_{node}")))
    na = Na(server, legacy_app)
    r = na.post(f"{OPS}/firmwareUpgrade", {"fileId": "pkg-v2", "targets": {"devices": [
        "legacy_ok1", "legacy_ok2", "legacy_bad"]}, "policy": {"executeType": "now"}})
    assert r.status_code == 200, r.text
    op = r.json()["operationId"]

    worker()
    deadline = time.monotonic() + 60
    while True:
        task = na.get(f"{OPS}/{op}").json()
        if task["status"] in ("success", "failed", "stop"):
            break
        assert time.monotonic() < deadline, task
        time.sleep(0.1)
    assert task["status"] == "failed"
    assert task["operateType"] == "firmware_upgrade"
    assert task["staResult"] == {"total": 3, "wait": 0, "processing": 0, "success": 2, "fail": 1, "stop": 0,
                                 "timeout": 0}
    assert len(task["createTime"]) == 16 and task["createTime"].endswith("Z")

    subs = na.get(f"{OPS}/{op}/subOperations", pageNo=0, pageSize=10).json()
    assert subs["totalCount"] == 3
    by_device = {s["deviceId"]: s for s in subs["data"]}
    assert by_device["legacy_bad"]["status"] == "fail"
    assert by_device["legacy_bad"]["detailInfo"] == "flash failed"
    assert by_device["legacy_ok1"]["status"] == "success"
    failed = na.get(f"{OPS}/{op}/subOperations", subOperationStatus="fail").json()
    assert [s["deviceId"] for s in failed["data"]] == ["legacy_bad"]

    listed = na.get(OPS, operationType="firmware_upgrade", operationStatus="failed", deviceId="legacy_ok2").json()
    assert [t["operationId"] for t in listed["data"]] == [op]
    assert listed["totalCount"] == listed["totalSize"] == 1

    # Errors in the legacy envelope.
    r = na.get(f"{OPS}/{op}/subOperations", pageSize=101)
    assert (r.status_code, r.json()["error_code"]) == (400, "123029")
    r = na.put(f"{OPS}/{op}/stop")
    assert (r.status_code, r.json()["error_code"]) == (400, "120015")
    r = requests.get(f"{server.url}{OPS}", headers={"Authorization": f"Bearer {na.token}"}, timeout=10)
    assert (r.status_code, r.json()["error_code"]) == (401, "100025")


def test_apps_cli_and_token_replacement(server, creds, legacy_app):
    first = Na(server, legacy_app)
    second = Na(server, legacy_app)
    r = first.get(OPS)
    assert (r.status_code, r.json()["error_code"]) == (403, "1010005"), "only the last token is valid"
    assert second.get(OPS).status_code == 200

    listed = json.loads(apps_cli(server, "list", "--json"))
    mine = [a for a in listed if a["app_id"] == legacy_app["app_id"]]
    assert mine == [{"app_id": legacy_app["app_id"], "project_id": creds.project_id,
                     "created_at": mine[0]["created_at"], "revoked": False}]
    assert legacy_app["secret"] not in json.dumps(listed)

    apps_cli(server, "revoke", "--app-id", legacy_app["app_id"])
    r = second.get(OPS)
    assert (r.status_code, r.json()["error_code"]) == (403, "1010005")
    r = requests.post(f"{server.url}/iocm/app/sec/v1.1.0/login",
                      data={"appId": legacy_app["app_id"], "secret": legacy_app["secret"]}, timeout=10)
    assert (r.status_code, r.json()["error_code"]) == (400, "100247")


def test_apps_of_other_projects_see_nothing(server, creds, legacy_app):
    other_creds = server.create_credentials()
    other = json.loads(apps_cli(server, "create", "--project-id", other_creds.project_id, "--json"))
    na, stranger = Na(server, legacy_app), Na(server, other)
    plain = requests.post(f"{server.url}{OPS}/firmwareUpgrade", json={"fileId": "f"}, headers=na.headers(),
                          timeout=10)
    assert (plain.status_code, plain.json()["error_code"]) == (400, "123022")
    assert stranger.get(OPS).json()["totalCount"] == 0
    r = stranger.get(f"{OPS}/ffffffffffffffffffffffff")
    assert (r.status_code, r.json()["error_code"]) == (404, "123009")
