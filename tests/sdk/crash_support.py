"""What the crash-and-fault suite (test_crash.py) shares: a signed client for taskd's native API (the worker protocol
and instance operations, which no Huawei SDK speaks), read-only SQL on a server's store, the invariants every store
must hold at any moment, and the ledger of what the server acknowledged."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from taskd_sdk import FIGURES, Creds

AMCHECK_MISSING = "PostgreSQL's amcheck extension is not installed: B-tree indexes were not verified"
FINAL_TASK_STATES = ("succeeded", "failed", "partially_succeeded", "stopped")
SUB_TASK_STATES = ("waiting", "processing", "succeeded", "failed", "retry_waiting", "stopped", "removed")
COUNTER_OF = {"waiting": "n_waiting", "processing": "n_processing", "succeeded": "n_succeeded",
              "failed": "n_failed", "retry_waiting": "n_retry_waiting", "stopped": "n_stopped",
              "removed": "n_removed"}


def db_id(hex_id: str) -> int:
    """The store's integer key of a 24-hex id the API handed out."""
    return int(hex_id, 16)


# ---- the native API ---------------------------------------------------------------------------------------------


class NativeClient:
    """Requests to `/taskd/v1/`, signed by the official SDK core's own signer (SDK-HMAC-SHA256), as a worker or a
    control plane would send them. Connection problems raise OSError (the server may be dead: the caller decides)."""

    def __init__(self, url: str, creds: Creds, timeout: float = 30.0):
        self.url = url
        self.host = url.split("://", 1)[1]
        self.creds = creds
        self.signer = Signer(BasicCredentials(creds.ak, creds.sk, creds.project_id))
        self.timeout = timeout

    def call(self, method: str, path: str, body=None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        req = SdkRequest(method=method, schema="http", host=self.host, resource_path=path, query_params=[],
                         header_params=headers, body=data)
        self.signer.sign(req)
        http_req = urllib.request.Request(self.url + path, data=data or None, method=method,
                                          headers=dict(req.header_params))
        try:
            with urllib.request.urlopen(http_req, timeout=self.timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw else {}
        except ValueError:
            return status, {"unparsed": raw[:300].decode("utf-8", "replace")}

    def claim(self, worker_id: str, task_types, max_: int, lease_seconds: int = 5, wait_seconds: int = 0):
        return self.call("POST", f"/taskd/v1/{self.creds.project_id}/claims", {
            "protocol": 2, "worker_id": worker_id, "task_types": list(task_types), "max": max_,
            "lease_seconds": lease_seconds, "wait_seconds": wait_seconds})

    def heartbeat(self, sub_task_id: str, attempt: int, lease_seconds: int = 5, progress: int | None = None):
        body = {"attempt": attempt, "lease_seconds": lease_seconds}
        if progress is not None:
            body["progress"] = progress
        return self.call("POST", f"/taskd/v1/{self.creds.project_id}/sub-tasks/{sub_task_id}/heartbeat", body)

    def results(self, results: list[dict]):
        return self.call("POST", f"/taskd/v1/{self.creds.project_id}/results", {"results": results})

    def create_operation(self, body: dict):
        return self.call("POST", f"/taskd/v1/{self.creds.project_id}/operations", body)


# ---- the store, read with SQL -----------------------------------------------------------------------------------


class StoreSql:
    """Read-only SQL on a server's store, SQLite or PostgreSQL, with values as text (None for NULL) so the checks
    read the same on both. SQLite: `snapshot()` copies the database and its WAL (the server is dead or stopped) and
    checks the copy; `live()` reads the file in place (WAL readers never block the writer)."""

    def __init__(self, data_dir: Path | None = None, database_url: str | None = None):
        self.data_dir = data_dir
        self.database_url = database_url
        self._conn: sqlite3.Connection | None = None

    @property
    def is_postgres(self) -> bool:
        return self.database_url is not None

    @classmethod
    def of(cls, srv) -> "StoreSql":
        if srv.database_url:
            return cls(database_url=srv.database_url)
        return cls(data_dir=srv.data_dir)

    def snapshot(self, into: Path) -> "StoreSql":
        if self.is_postgres:
            return self
        into.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal"):
            src = self.data_dir / f"taskd.sqlite3{suffix}"
            if src.exists():
                shutil.copyfile(src, into / src.name)
        view = StoreSql(data_dir=into)
        view._conn = sqlite3.connect(into / "taskd.sqlite3")
        return view

    def live(self) -> "StoreSql":
        if self.is_postgres:
            return self
        view = StoreSql(data_dir=self.data_dir)
        view._conn = sqlite3.connect(f"file:{self.data_dir / 'taskd.sqlite3'}?mode=ro", uri=True, timeout=10)
        return view

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def rows(self, sql: str) -> list[tuple]:
        if self.is_postgres:
            res = subprocess.run(["psql", self.database_url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                  "-F", "\x1f", "-R", "\x1e", "-P", "null=\x01", "-c", sql],
                                 capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            if res.returncode != 0:
                raise AssertionError(f"psql failed on {sql!r}: {res.stderr}")
            out = res.stdout.rstrip("\n")
            if not out:
                return []
            return [tuple(None if v == "\x01" else v for v in rec.split("\x1f"))
                    for rec in out.split("\x1e") if rec.strip("\n") != ""]
        assert self._conn is not None, "snapshot() or live() first"
        return [tuple(None if v is None else str(v) for v in row) for row in self._conn.execute(sql).fetchall()]

    def scalar(self, sql: str):
        rows = self.rows(sql)
        return rows[0][0] if rows else None

    # ---- integrity of the database itself --------------------------------------------------------------------

    def integrity_problems(self) -> list[str]:
        """SQLite: `PRAGMA integrity_check` and `foreign_key_check`. PostgreSQL: amcheck's `bt_index_check` (with
        heap verification) on every B-tree index of the store's schema, when the extension is installed."""
        if not self.is_postgres:
            problems = [f"integrity_check: {r[0]}" for r in self.rows("PRAGMA integrity_check") if r[0] != "ok"]
            problems += [f"foreign_key_check: {r}" for r in self.rows("PRAGMA foreign_key_check")]
            return problems
        try:
            self.rows("CREATE EXTENSION IF NOT EXISTS amcheck")
        except AssertionError as e:
            if "amcheck" not in str(e):
                return [str(e)]
            if AMCHECK_MISSING not in FIGURES:
                FIGURES.append(AMCHECK_MISSING)
            return []
        # One statement for all of them: a corrupt index fails it, naming the index.
        try:
            self.rows("SELECT bt_index_check(c.oid, true) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                      "JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
                      "WHERE a.amname = 'btree' AND n.nspname = current_schema()")
        except AssertionError as e:
            return [f"bt_index_check: {e}"]
        return []


def store_invariant_problems(db: StoreSql) -> list[str]:
    """What must hold in any store at any moment, whatever was killed when: counters equal the rows they count,
    task states agree with their counters, id allocators are ahead of every id handed out, leases are set."""
    problems = []
    stored = ", ".join(COUNTER_OF[s] for s in SUB_TASK_STATES)
    rows = db.rows(f"SELECT t.id, t.state, t.n_total, {stored}, c.n, c.{', c.'.join(f'c{i}' for i in range(7))} "
                   f"FROM tasks t LEFT JOIN (SELECT task_id, COUNT(*) AS n, "
                   + ", ".join(f"SUM(CASE WHEN state = '{s}' THEN 1 ELSE 0 END) AS c{i}"
                               for i, s in enumerate(SUB_TASK_STATES))
                   + " FROM sub_tasks GROUP BY task_id) c ON c.task_id = t.id")
    for row in rows:
        task_id, state = row[0], row[1]
        have = [int(v) for v in row[2:10]]
        real = [int(v or 0) for v in row[10:18]]
        if have != real:
            problems.append(f"task {task_id}: counters (total, {stored}) = {have}, its sub-task rows say {real}")
        waiting, processing, retry_waiting = have[1], have[2], have[5]
        active = waiting + processing + retry_waiting
        if state in FINAL_TASK_STATES and active:
            problems.append(f"task {task_id} is {state} with {active} sub-tasks still active: {have}")
        if state in ("processing", "stopping") and not active:
            problems.append(f"task {task_id} is {state} with nothing active: {have}")

    stored_counts = {tuple(r[:5]): int(r[5]) for r in db.rows(
        "SELECT project_id, instance_id, app_id, kind, state, n FROM task_counts") if int(r[5]) != 0}
    real_counts = {tuple(r[:5]): int(r[5]) for r in db.rows(
        "SELECT project_id, instance_id, COALESCE(app_id, ''), kind, state, COUNT(*) FROM tasks "
        "GROUP BY project_id, instance_id, COALESCE(app_id, ''), kind, state")}
    if stored_counts != real_counts:
        diff = {k: (stored_counts.get(k), real_counts.get(k)) for k in set(stored_counts) | set(real_counts)
                if stored_counts.get(k) != real_counts.get(k)}
        problems.append(f"task_counts (stored, real) differ: {diff}")

    last_id = int(db.scalar("SELECT last_id FROM id_allocator"))
    top = max(int(db.scalar("SELECT COALESCE(MAX(id), 0) FROM tasks")),
              int(db.scalar("SELECT COALESCE(MAX(id), 0) FROM sub_tasks")))
    if top > last_id:
        problems.append(f"id_allocator.last_id {last_id} is behind an id in use, {top}: ids could be reused")
    last_reg = int(db.scalar("SELECT last_id FROM registry_id_allocator"))
    top_reg = max(int(db.scalar("SELECT COALESCE(MAX(id), 0) FROM devices")),
                  int(db.scalar("SELECT COALESCE(MAX(id), 0) FROM device_groups")))
    if top_reg > last_reg:
        problems.append(f"registry_id_allocator.last_id {last_reg} is behind an id in use, {top_reg}")

    leaseless = db.rows("SELECT id FROM sub_tasks WHERE state = 'processing' AND lease_until IS NULL")
    if leaseless:
        problems.append(f"processing sub-tasks without a lease (never handed out again): {leaseless[:10]}")
    return problems


# ---- what the server acknowledged -------------------------------------------------------------------------------


@dataclass
class TaskRec:
    name: str
    kind: str
    targets: list[str]
    need_confirm: bool = False
    task_id: int | None = None  # set when the create was acknowledged
    round: int = 0


@dataclass
class Ledger:
    """Every write sent, and those the server acknowledged (2xx). A write whose answer never came (the server was
    killed) may or may not have happened: it is `attempted` only."""

    lock: threading.Condition = field(default_factory=threading.Condition)
    tasks: dict[str, TaskRec] = field(default_factory=dict)  # every create sent, by its unique name
    refused: dict[str, str] = field(default_factory=dict)  # name -> error (a 4xx: must have written nothing)
    stopped: set[int] = field(default_factory=set)  # acknowledged whole-task stops
    devices_added: set[str] = field(default_factory=set)  # AddDevice acknowledged
    devices_add_sent: set[str] = field(default_factory=set)
    deletable: list[str] = field(default_factory=list)  # acknowledged adds no delete has named yet
    ops: dict[str, int | None] = field(default_factory=dict)  # operation token -> id when acknowledged
    claims: dict[int, list[int]] = field(default_factory=dict)  # sub-task -> attempts handed out, in order
    succeeded: dict[int, str] = field(default_factory=dict)  # sub-task -> output of its accepted success
    violations: list[str] = field(default_factory=list)  # found while the load ran
    acks: int = 0
    errors_5xx: int = 0

    def ack(self, n: int = 1) -> None:
        with self.lock:
            self.acks += n
            self.lock.notify_all()

    def violation(self, what: str) -> None:
        with self.lock:
            self.violations.append(what)
