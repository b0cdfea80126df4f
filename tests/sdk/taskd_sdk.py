"""Helpers for the SDK conformance suite: run a taskd server, drive it with the official Huawei Cloud SDK.

Imported by conftest.py and the test modules (pytest puts this directory on sys.path).
"""

from __future__ import annotations

import json
import os
import secrets
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import SdkException, ServiceResponseException
from huaweicloudsdkcore.http.formdata import FormFile
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.region.region import Region
from huaweicloudsdkiotda.v5 import (
    BatchTargets,
    ConfirmBatchTaskRequest,
    CreateBatchTask,
    CreateBatchTaskRequest,
    DeleteBatchTaskFileRequest,
    DeleteBatchTaskRequest,
    IoTDAClient,
    ListBatchTaskFilesRequest,
    ListBatchTasksRequest,
    RetryBatchTaskRequest,
    ShowBatchTaskRequest,
    StopBatchTaskRequest,
    TaskPolicy,
    UploadBatchTaskFileRequest,
    UploadBatchTaskFileRequestBody,
)

REPO = Path(__file__).resolve().parents[2]
TASKD_BIN = Path(os.environ.get("TASKD_BIN") or (REPO / "target" / "debug" / "taskd"))
REGION = "cn-north-4"

TASK_ID_RE = re.compile(r"^[0-9a-f]{24}$")
TIME_RE = re.compile(r"^\d{8}T\d{6}Z$")
FILE_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")

PACKAGE_ID = "32822e5744a45ede319d2c50"
UPGRADE_TYPES = ("firmwareUpgrade", "softwareUpgrade", "moduleUpgrade")
ALL_TASK_TYPES = (
    "softwareUpgrade", "firmwareUpgrade", "moduleUpgrade", "createDevices", "deleteDevices", "freezeDevices",
    "unfreezeDevices", "createCommands", "createAsyncCommands", "createMessages", "updateDeviceShadows",
    "updateDevices", "sendEmails", "sendSmss", "addDevicesToGroup", "deviceConfig", "deviceJob", "changeGateway",
)
DEVICE_FILE_HEADER = ["node_id", "product_id", "device_id", "device_name", "description", "app_id", "secret",
                      "gateway_id"]

# error codes of the contract
E_INVALID = "IOTDA.000006"
E_BAD_JSON = "IOTDA.000008"
E_BAD_TIME = "IOTDA.000009"
E_AUTH = "IOTDA.000002"
E_FORBIDDEN_PROJECT = "IOTDA.000021"
E_TASK_NOT_FOUND = "IOTDA.014200"
E_TARGET_NOT_IN_TASK = "IOTDA.014219"
E_BAD_STATE = "IOTDA.014221"
E_FILE_NOT_FOUND = "IOTDA.014600"
E_FILE_LIMIT = "IOTDA.014601"
E_FILE_TYPE = "IOTDA.014602"
E_FILE_UNREADABLE = "IOTDA.014603"
E_FILE_TOO_MANY_ROWS = "IOTDA.014604"
E_FILE_NAME_TOO_LONG = "IOTDA.014605"
E_FILE_EMPTY = "IOTDA.014606"


# ----------------------------------------------------------------------------------------------------------------
# identities


def new_project_id() -> str:
    return uuid.uuid4().hex  # 32 lowercase hex


def new_ak() -> str:
    return "AK" + uuid.uuid4().hex[:18].upper()


def new_sk() -> str:
    return "SK" + uuid.uuid4().hex + uuid.uuid4().hex[:6]


def new_instance_id() -> str:
    return str(uuid.uuid4())  # matches [a-f0-9-]{1,36}


@dataclass(frozen=True)
class Creds:
    project_id: str
    ak: str
    sk: str


def sdk_time(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def utc_in(**delta) -> str:
    return sdk_time(utc_now() + timedelta(**delta))


# ----------------------------------------------------------------------------------------------------------------
# the server process


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0):
    """(status, headers, body) of a plain unsigned GET; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url), timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


LIVE_SERVERS: list["TaskdServer"] = []

# Figures a test measured (rounds, time, counts), printed at the end of the run (conftest.py).
FIGURES: list[str] = []


# When set (scripts/test sets it), every server gets a fresh PostgreSQL database on this
# server instead of an SQLite data dir: the whole suite then runs against PostgreSQL.
POSTGRES_URL = os.environ.get("TASKD_SDK_POSTGRES_URL") or None


def _psql(admin_url: str, sql: str) -> None:
    subprocess.run(["psql", admin_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
                   check=True, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def _database_url(admin_url: str, database: str) -> str:
    """`admin_url` with its database name replaced."""
    base, _, query = admin_url.partition("?")
    scheme, _, rest = base.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/{database}" + (f"?{query}" if query else "")


class TaskdServer:
    """One `taskd serve` process on 127.0.0.1:<free port> with its own data dir (or its own
    PostgreSQL database when TASKD_SDK_POSTGRES_URL is set)."""

    def __init__(self, data_dir: Path, name: str = "taskd", bootstrap: Creds | None = None,
                 database_url: str | None = None, mqtt_host: str | None = None, tls: tuple[Path, Path] | None = None,
                 extra_args: tuple[str, ...] = ()):
        """`database_url`: join another server's PostgreSQL database (a cluster node) instead of a fresh one.
        `mqtt_host`: a loopback address for a device listener on a free port (127.0.0.1:1883 is Mosquitto's on
        the test machines); without it the server runs without one (`--mqtt-listen off`). `extra_args`: more
        `taskd serve` flags."""
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url
        self.owns_database = database_url is None
        if POSTGRES_URL and database_url is None:
            database = f"taskd_sdk_{secrets.token_hex(6)}"
            _psql(POSTGRES_URL, f"CREATE DATABASE {database}")
            self.database_url = _database_url(POSTGRES_URL, database)
        self.name = name
        self.log_path = self.data_dir.parent / f"{name}.log"
        self.bootstrap = bootstrap or Creds(new_project_id(), new_ak(), new_sk())
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.mqtt_host = mqtt_host
        self.mqtt_port: int | None = None
        self.tls = tls  # (cert, key) PEM files: also an MQTT-over-TLS listener on mqtt_host
        self.mqtts_port: int | None = None
        self.extra_args = list(extra_args)
        LIVE_SERVERS.append(self)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self, start: int = 0, limit: int = 20000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            return "(no log file)"
        text = data.decode("utf-8", "replace")
        if len(text) > limit:
            text = "...(cut)...\n" + text[-limit:]
        return text

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def start(self, deadline_s: float = 30.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = dict(os.environ)
        env.update(
            TASKD_BOOTSTRAP_PROJECT_ID=self.bootstrap.project_id,
            TASKD_BOOTSTRAP_AK=self.bootstrap.ak,
            TASKD_BOOTSTRAP_SK=self.bootstrap.sk,
        )
        last_err = None
        for _attempt in range(3):  # the free port may be taken between probing and binding
            self.port = free_port()
            if self.mqtt_host:
                # A restart keeps its address: devices reconnect to where they were.
                self.mqtt_port = self.mqtt_port or free_port(self.mqtt_host)
                mqtt_args = ["--mqtt-listen", f"{self.mqtt_host}:{self.mqtt_port}"]
                if self.tls:
                    self.mqtts_port = self.mqtts_port or free_port(self.mqtt_host)
                    mqtt_args += ["--mqtts-listen", f"{self.mqtt_host}:{self.mqtts_port}",
                                  "--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
            else:
                mqtt_args = ["--mqtt-listen", "off"]
            with open(self.log_path, "ab") as log:
                log.write(f"\n===== start {self.name} on port {self.port} =====\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    [str(TASKD_BIN), "serve", "--listen", f"127.0.0.1:{self.port}", *self.store_args(), *mqtt_args,
                     *self.extra_args],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                )
            end = time.monotonic() + deadline_s
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    last_err = f"taskd exited with {self.proc.returncode} before it was ready"
                    break
                try:
                    status, _, _ = http_get(self.url + "/healthz", timeout=1.0)
                    if status == 200:
                        return
                    last_err = f"/healthz answered {status}"
                except OSError as e:  # connection refused while starting
                    last_err = str(e)
                time.sleep(0.05)  # readiness polling of a freshly started process only
            else:
                self.kill()
                raise RuntimeError(f"taskd not ready within {deadline_s}s ({last_err}); log:\n{self.log_text()}")
        raise RuntimeError(f"taskd did not start: {last_err}; log:\n{self.log_text()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; returns the exit code (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def store_args(self) -> list[str]:
        if self.database_url:
            return ["--database-url", self.database_url]
        return ["--data-dir", str(self.data_dir)]

    def drop_database(self) -> None:
        """Drops this server's PostgreSQL database (after it stopped)."""
        if self.database_url and self.owns_database:
            name = self.database_url.rsplit("/", 1)[1].split("?")[0]
            _psql(POSTGRES_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    # --- the credentials CLI -----------------------------------------------------------------------------------

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(TASKD_BIN), "credentials", *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {res.returncode}\nstdout:{res.stdout}\nstderr:{res.stderr}")
        return res

    def create_credentials(self, project_id: str | None = None, ak: str | None = None,
                           sk: str | None = None) -> Creds:
        c = Creds(project_id or new_project_id(), ak or new_ak(), sk or new_sk())
        res = self.cli("create", *self.store_args(), "--project-id", c.project_id,
                       "--ak", c.ak, "--sk", c.sk, "--json")
        out = json.loads(res.stdout)
        assert isinstance(out, dict), res.stdout
        assert (out.get("project_id"), out.get("access_key"), out.get("secret_key")) == (c.project_id, c.ak, c.sk), \
            f"credentials create --json printed {res.stdout!r}"
        return c

    def revoke_credentials(self, ak: str) -> None:
        self.cli("revoke", *self.store_args(), "--ak", ak)

    def list_credentials(self) -> tuple[list, str]:
        res = self.cli("list", *self.store_args(), "--json")
        return json.loads(res.stdout), res.stdout


# ----------------------------------------------------------------------------------------------------------------
# SDK clients


def make_client(url: str, cred: BasicCredentials, mode: str = "plain") -> IoTDAClient:
    if mode == "derived":
        cred = cred.with_derived_predicate(BasicCredentials.get_default_derived_predicate())
    else:
        assert mode == "plain", mode
    cfg = HttpConfig.get_default_config()
    cfg.timeout = (10, 120)
    return (IoTDAClient.new_builder().with_http_config(cfg).with_credentials(cred)
            .with_region(Region(REGION, url)).build())


_NO_BODY = object()


class Api:
    """Thin convenience layer over IoTDAClient; every call goes through the official SDK."""

    def __init__(self, url: str, creds: Creds, mode: str = "plain", path_project_id: str | None = None):
        self.creds = creds
        self.mode = mode
        self.project_id = path_project_id or creds.project_id
        self.client = make_client(url, BasicCredentials(creds.ak, creds.sk, self.project_id), mode)
        self._seq = 0

    # --- tasks -------------------------------------------------------------------------------------------------

    def create(self, body, instance_id=None):
        """body: a CreateBatchTask, a dict of CreateBatchTask fields (task_policy may be a dict) or a raw str."""
        if isinstance(body, dict):
            fields = dict(body)
            if isinstance(fields.get("task_policy"), dict):
                fields["task_policy"] = TaskPolicy(**fields["task_policy"])
            body = CreateBatchTask(**fields)
        return self.client.create_batch_task(CreateBatchTaskRequest(instance_id=instance_id, body=body))

    def next_name(self, prefix="task") -> str:
        self._seq += 1
        return f"{prefix}_{self._seq}"

    def upgrade_body(self, targets=("dev_1", "dev_2", "dev_3"), task_type="firmwareUpgrade", **extra) -> dict:
        body = {"task_name": self.next_name(task_type), "task_type": task_type, "targets": list(targets),
                "document": {"package_ids": [PACKAGE_ID]}}
        body.update(extra)
        return body

    def create_upgrade(self, targets=("dev_1", "dev_2", "dev_3"), task_type="firmwareUpgrade", instance_id=None,
                       **extra):
        resp = self.create(self.upgrade_body(targets, task_type, **extra), instance_id=instance_id)
        assert resp.status_code == 201, resp
        return resp

    def create_simple(self, task_type="createCommands", targets=("dev_1",), instance_id=None, **extra):
        body = {"task_name": self.next_name(task_type), "task_type": task_type, "targets": list(targets)}
        if task_type in UPGRADE_TYPES:
            body["document"] = {"package_ids": [PACKAGE_ID]}
        body.update(extra)
        resp = self.create(body, instance_id=instance_id)
        assert resp.status_code == 201, resp
        return resp

    def list(self, instance_id=None, **query):
        return self.client.list_batch_tasks(ListBatchTasksRequest(instance_id=instance_id, **query))

    def show(self, task_id, instance_id=None, **query):
        return self.client.show_batch_task(ShowBatchTaskRequest(instance_id=instance_id, task_id=task_id, **query))

    def delete(self, task_id, instance_id=None):
        return self.client.delete_batch_task(DeleteBatchTaskRequest(instance_id=instance_id, task_id=task_id))

    @staticmethod
    def _targets_body(targets):
        if targets is _NO_BODY:
            return None  # the SDK then sends no body at all
        if targets is None:
            return BatchTargets()  # "{}"
        return BatchTargets(targets=list(targets))

    def stop(self, task_id, targets=_NO_BODY, instance_id=None):
        return self.client.stop_batch_task(StopBatchTaskRequest(
            instance_id=instance_id, task_id=task_id, body=self._targets_body(targets)))

    def retry(self, task_id, targets=_NO_BODY, instance_id=None):
        return self.client.retry_batch_task(RetryBatchTaskRequest(
            instance_id=instance_id, task_id=task_id, body=self._targets_body(targets)))

    def confirm(self, task_id, targets=_NO_BODY, instance_id=None):
        return self.client.confirm_batch_task(ConfirmBatchTaskRequest(
            instance_id=instance_id, task_id=task_id, body=self._targets_body(targets)))

    def op(self, name, task_id, targets=_NO_BODY, instance_id=None):
        return getattr(self, name)(task_id, targets=targets, instance_id=instance_id)

    def details(self, task_id, instance_id=None, **query) -> list[tuple[str, str]]:
        """All (target, status) of a task, walking the pages with marker (newest first)."""
        out, marker = [], None
        for _ in range(1000):
            resp = self.show(task_id, instance_id=instance_id, limit=50, marker=marker, **query)
            page = resp.task_details or []
            out.extend((d.target, d.status) for d in page)
            if len(page) < 50:
                return out
            marker = resp.page.marker
        raise AssertionError("task_details pagination does not end")

    def status_of(self, task_id, instance_id=None) -> dict[str, str]:
        return dict(self.details(task_id, instance_id=instance_id))

    # --- files -------------------------------------------------------------------------------------------------

    def upload(self, path, instance_id=None):
        with open(path, "rb") as f:
            body = UploadBatchTaskFileRequestBody(file=FormFile(f))
            return self.client.upload_batch_task_file(UploadBatchTaskFileRequest(instance_id=instance_id, body=body))

    def list_files(self, instance_id=None):
        return self.client.list_batch_task_files(ListBatchTaskFilesRequest(instance_id=instance_id))

    def delete_file(self, file_id, instance_id=None):
        return self.client.delete_batch_task_file(DeleteBatchTaskFileRequest(instance_id=instance_id,
                                                                             file_id=file_id))


NO_BODY = _NO_BODY


def raw_json(resp):
    """The response body exactly as the server sent it (to check JSON types the SDK would coerce)."""
    return json.loads(resp.raw_content)


def expect_error(call, status: int, code: str) -> ServiceResponseException:
    """Run call(); it must raise the SDK's ClientRequestException with this HTTP status and error_code."""
    try:
        resp = call()
    except ServiceResponseException as e:
        assert (e.status_code, e.error_code) == (status, code), (
            f"expected HTTP {status} {code}, got HTTP {e.status_code} {e.error_code}: {e.error_msg}")
        assert e.request_id, f"error response without X-Request-Id: {e}"
        assert e.error_msg, f"error response without error_msg: {e}"
        return e
    except SdkException as e:  # connection problems, undecodable answers
        pytest.fail(f"expected HTTP {status} {code}, got {e!r}")
    raw = getattr(resp, "raw_content", b"") or b""
    pytest.fail(f"expected HTTP {status} {code}, got success HTTP {getattr(resp, 'status_code', '?')}: "
                f"{raw[:500]!r}")


def target_results(resp) -> dict[str, tuple[str, str | None]]:
    """{target: (status, error_code)} of a retry/stop/confirm answer."""
    return {r.target: (r.status, r.error_code) for r in (resp.targets or [])}


def progress(task) -> dict[str, int]:
    p = task.task_progress
    assert p is not None, "task_progress missing"
    return {k: getattr(p, k) for k in ("total", "processing", "success", "fail", "waitting", "fail_wait_retry",
                                       "stopped", "removed")}


def expected_progress(**nonzero) -> dict[str, int]:
    base = dict.fromkeys(("total", "processing", "success", "fail", "waitting", "fail_wait_retry", "stopped",
                          "removed"), 0)
    base.update(nonzero)
    return base


# ----------------------------------------------------------------------------------------------------------------
# spreadsheets


def write_xlsx(path: Path, header, rows) -> Path:
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("devices")
    if header is not None:
        ws.append(list(header))
    for row in rows:
        ws.append(list(row))
    wb.save(path)
    return path


def write_xls(path: Path, header, rows) -> Path:
    import xlwt

    wb = xlwt.Workbook()
    ws = wb.add_sheet("devices")
    r = 0
    if header is not None:
        for c, v in enumerate(header):
            ws.write(r, c, v)
        r += 1
    for row in rows:
        for c, v in enumerate(row):
            if v is not None:
                ws.write(r, c, v)
        r += 1
    wb.save(str(path))
    return path


def device_rows(n: int, prefix: str = "node"):
    """n AddDevice rows: node_id, product_id, device_id, device_name, ... (device_id left empty)."""
    for i in range(n):
        yield [f"{prefix}_{i}", "prod_1", None, f"name_{i}", None, None, None, None]


# ---- workers ----------------------------------------------------------------------------------------------------


class Worker:
    """A real `taskd worker` process claiming `task_types` for `creds`' project and running `command` (argv) once
    per sub-task."""

    def __init__(self, url: str, creds: Creds, task_types, command, concurrency: int = 8, extra_args=()):
        args = [str(TASKD_BIN), "worker", "--endpoint", url, "--ak", creds.ak, "--sk", creds.sk,
                "--project-id", creds.project_id, "--concurrency", str(concurrency), *extra_args]
        for t in task_types:
            args += ["--task-type", t]
        self.proc = subprocess.Popen(args + ["--", *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)

    def stop(self) -> str:
        """SIGTERM: finish the running commands, report them, exit 0."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, f"taskd worker exited with {self.proc.returncode}:\n{out}"
        return out

    def abort(self) -> None:
        """Two SIGTERMs: the second kills the running commands (for commands that never end)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=30)


def wait_for(check, what: str, deadline_s: float = 60.0):
    """Polls `check()` as a user would poll the API, until it returns something truthy."""
    end = time.monotonic() + deadline_s
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


# ---- instance operations (IoTDM, RabbitMQ, SWR) -----------------------------------------------------------------


def service_client(client_cls, url: str, creds: Creds, project_id: str | None = None):
    """An official service client (IoTDMClient, RabbitMQClient, SwrClient: plain SDK-HMAC-SHA256) on taskd."""
    cfg = HttpConfig.get_default_config()
    cfg.timeout = (10, 120)
    cred = BasicCredentials(creds.ak, creds.sk, project_id or creds.project_id)
    return client_cls.new_builder().with_http_config(cfg).with_credentials(cred).with_region(Region(REGION, url)).build()


def ops_cli(server, creds: Creds, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`taskd ops <command> ...` against `server` with `creds` (the control plane's side, over the native API)."""
    cmd = [str(TASKD_BIN), "ops", command, "--endpoint", server.url, "--ak", creds.ak, "--sk", creds.sk,
           "--project-id", creds.project_id, *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {res.returncode}\nstdout:{res.stdout}\nstderr:{res.stderr}")
    return res


def ops_create(server, creds: Creds, service: str, instance_id: str, op_type: str, **opts) -> dict:
    """Records an operation with `taskd ops create --json`; opts are its flags (params as a dict)."""
    args = ["--service", service, "--instance-id", instance_id, "--type", op_type, "--json"]
    for k, v in opts.items():
        args += [f"--{k.replace('_', '-')}", json.dumps(v) if isinstance(v, dict) else str(v)]
    return json.loads(ops_cli(server, creds, "create", *args).stdout)


def new_hex_instance_id() -> str:
    """An IoTDA instance id ([0-9a-f-]{1,36})."""
    return str(uuid.uuid4())


# Succeeds, naming what it did; fails (exit 3, reason on stderr) for a target starting with "bad" on its first
# attempt, so a retry succeeds.
OPS_SCRIPT = (
    'echo "$TASKD_TASK_TYPE on $TASKD_INSTANCE_ID ($TASKD_TARGET) attempt $TASKD_ATTEMPT"; '
    'case "$TASKD_TARGET" in bad*) [ "$TASKD_ATTEMPT" != 1 ] || { echo "quota exceeded" >&2; exit 3; };; esac'
)


def hh_mm(dt: datetime) -> str:
    return dt.strftime("%H:%M")


def closed_window() -> tuple[str, str]:
    """A maintenance window (UTC) that opens in two hours, so it is closed for the whole test."""
    now = utc_now()
    return hh_mm(now + timedelta(hours=2)), hh_mm(now + timedelta(hours=3))


# ---- a private PostgreSQL cluster -------------------------------------------------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A throwaway PostgreSQL cluster of our own (initdb in a temp dir, its own port), so stopping it disturbs no
    other test. As root, the server runs as the `postgres` user (it refuses root)."""

    def __init__(self, root: Path):
        self.dir = root / "pgdata"
        self.port = free_port()
        self.socket_dir = root / "pgsock"
        self.socket_dir.mkdir()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            import shutil

            shutil.chown(root, "postgres")
            shutil.chown(self.socket_dir, "postgres")
        self._run(PG_BIN / "initdb", "-D", str(self.dir), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd):
        subprocess.run(self.as_user + [str(c) for c in cmd], check=True, capture_output=True, timeout=120,
                       stdin=subprocess.DEVNULL)

    def start(self):
        self._run(PG_BIN / "pg_ctl", "-D", self.dir, "-w", "-l", self.dir.parent / "pg.log",
                  "-o", f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "fast"):
        """`fast`: disconnect clients, shut down cleanly; `immediate`: quit at once (crash recovery on start)."""
        self._run(PG_BIN / "pg_ctl", "-D", self.dir, "-w", "-m", mode, "stop")
