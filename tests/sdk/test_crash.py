"""The crash-and-fault suite (issue 10): taskd killed with SIGKILL at random moments of a mixed load, round after
round; the embedded store's disk filling up and freed; PostgreSQL stopped and started under load. After each fault:
every write the server acknowledged is there exactly once, nothing it refused was written, no effect happened twice,
the counters add up, and the store's own integrity check passes. docs/fault-testing.md says how to run it longer.

Env: TASKD_CRASH_SEED (the schedule's seed; printed, and in every failure message), TASKD_CRASH_ROUNDS (default 20).
The seed fixes the schedule (what each thread sends, when the server is killed: after how many acknowledged
writes), not the threads' interleaving, which the machine decides.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import random
import secrets
import subprocess
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest
from huaweicloudsdkcore.exceptions.exceptions import SdkException, ServiceResponseException
from huaweicloudsdkiotda.v5 import AddDevice, AddDeviceRequest

from crash_support import (FINAL_TASK_STATES, Ledger, NativeClient, StoreSql, TaskRec, db_id,
                           store_invariant_problems)
from taskd_sdk import FIGURES, POSTGRES_URL, Api, TaskdServer, http_get, progress, wait_for, write_xlsx

SEED = int(os.environ.get("TASKD_CRASH_SEED") or secrets.randbits(32))
ROUNDS = int(os.environ.get("TASKD_CRASH_ROUNDS") or 20)
# What the kill rounds may take in scripts/test (both passes share ~4 minutes, docs/fault-testing.md), per round
# plus the final drain. Going over is reported (a warning in the run's summary), not failed: timings never fail.
BUDGET_S = 5.0 * ROUNDS + 60

TARGETS = [f"dev_{i}" for i in range(20)] + [f"bad_{i}" for i in range(5)]  # bad_*: the first attempt fails
WORKER_TYPES = ("firmwareUpgrade", "softwareUpgrade", "RESTART")
OP_INSTANCES = [f"rmq-crash-{i}" for i in range(4)]
LEASE_SECONDS = 5  # the protocol's shortest: a dead worker's sub-task runs again soon
NO_ANSWER = (SdkException, OSError, http.client.HTTPException)  # the server died (or never answered)


def tag(round_no=None) -> str:
    where = "" if round_no is None else f", round {round_no}"
    return f"[TASKD_CRASH_SEED={SEED}{where}]"


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


# ---- the load ---------------------------------------------------------------------------------------------------


class Load:
    """Threads writing through every path that changes state: IoTDA creates (explicit targets, some held for
    confirm, some with a retry policy) with stop/retry/confirm on earlier tasks, instance operations, the device
    registry (adds, and createDevices/deleteDevices tasks run by taskd itself), and workers claiming and reporting
    over the worker protocol. Each records in the ledger what the server acknowledged."""

    def __init__(self, ledger: Ledger, creds, workdir: Path, seed: int):
        self.ledger = ledger
        self.creds = creds
        self.workdir = workdir
        self.seed = seed
        self.threads: list[threading.Thread] = []
        self.stop_event = threading.Event()
        self.failures: list[str] = []

    def start(self, url: str, round_no: int, writers: bool = True) -> None:
        self.stop_event = threading.Event()
        kinds = (["creator", "registry"] if writers else []) + ["worker-0", "worker-1"]
        for kind in kinds:
            rng = random.Random(f"{self.seed}/{round_no}/{kind}")
            t = threading.Thread(target=self._run, args=(kind, url, round_no, rng), name=f"load-{kind}", daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=60)
            assert not t.is_alive(), f"load thread {t.name} did not end"
        self.threads = []
        assert not self.failures, f"a load thread failed: {self.failures}"

    def _run(self, kind: str, url: str, round_no: int, rng: random.Random) -> None:
        try:
            if kind == "creator":
                self._creator(url, round_no, rng)
            elif kind == "registry":
                self._registry(url, round_no, rng)
            else:
                self._worker(url, f"crash-{round_no}-{kind}", rng)
        except NO_ANSWER:
            pass  # the server is gone: this round's load ends here
        except Exception as e:  # a bug of the test itself: fail loudly
            self.failures.append(f"{kind}: {e!r}")

    # --- tasks, control, operations ----------------------------------------------------------------------------

    def _creator(self, url: str, r: int, rng: random.Random) -> None:
        api = Api(url, self.creds)
        native = NativeClient(url, self.creds)
        seq = 0
        while not self.stop_event.is_set():
            seq += 1
            name = f"r{r}_t{seq}"
            kind = rng.choice(("firmwareUpgrade", "softwareUpgrade"))
            targets = rng.sample(TARGETS, rng.randint(1, 5))
            rec = TaskRec(name, kind, targets, need_confirm=rng.random() < 0.15, round=r)
            body = api.upgrade_body(targets, kind, task_name=name, need_confirm=rec.need_confirm)
            if rng.random() < 0.4:
                body["task_policy"] = {"retry_count": 1, "retry_interval": 0}
            self._create(api, rec, body)
            if rng.random() < 0.3:
                self._control(api, rng)
            if rng.random() < 0.15:
                self._operation(native, r, seq, rng)

    def _create(self, api: Api, rec: TaskRec, body: dict) -> None:
        led = self.ledger
        with led.lock:
            led.tasks[rec.name] = rec
        try:
            resp = api.create(body)
        except ServiceResponseException as e:
            self._refusal(rec.name, e)
            return
        with led.lock:
            rec.task_id = db_id(resp.task_id)
        led.ack()

    def _refusal(self, name: str, e: ServiceResponseException) -> None:
        led = self.ledger
        with led.lock:
            if e.status_code < 500:
                led.refused[name] = f"{e.status_code} {e.error_code} {e.error_msg}"
                return
            led.errors_5xx += 1
        self.stop_event.wait(0.05)  # the store is failing (a full disk, no database): don't spin

    def _control(self, api: Api, rng: random.Random) -> None:
        led = self.ledger
        with led.lock:
            acked = [t for t in led.tasks.values() if t.task_id is not None]
        if not acked:
            return
        rec = rng.choice(acked)
        op = rng.choices(("stop", "retry", "confirm"), (3, 4, 3))[0]
        # Half of them name some of the task's targets, the rest act on the whole task.
        targets = rng.sample(rec.targets, rng.randint(1, len(rec.targets))) if rng.random() < 0.5 else None
        try:
            if targets is None:
                api.op(op, f"{rec.task_id:024x}")
            else:
                api.op(op, f"{rec.task_id:024x}", targets=targets)
        except ServiceResponseException as e:
            if e.status_code >= 500:
                with led.lock:
                    led.errors_5xx += 1
            return  # 400/403: not for this task type, or its state forbids it; nothing changed
        with led.lock:
            if op == "stop" and targets is None:
                led.stopped.add(rec.task_id)
        led.ack()

    def _operation(self, native: NativeClient, r: int, seq: int, rng: random.Random) -> None:
        led = self.ledger
        token = f"op_r{r}_{seq}"
        with led.lock:
            led.ops[token] = None
        status, body = native.create_operation({
            "service": "rabbitmq", "instance_id": rng.choice(OP_INSTANCES), "type": "RESTART",
            "params": {"token": token}})
        if status == 201:
            with led.lock:
                led.ops[token] = db_id(body["operation_id"])
            led.ack()
        elif status >= 500:
            with led.lock:
                led.errors_5xx += 1
        else:
            with led.lock:
                led.refused[token] = f"{status} {body}"

    # --- the device registry -----------------------------------------------------------------------------------

    def _registry(self, url: str, r: int, rng: random.Random) -> None:
        api = Api(url, self.creds)
        led = self.ledger
        # Task files a killed round left behind would count against the limit of 10 per scope. A task keeps its
        # rows (they travel with its sub-tasks), so deleting its file changes nothing for it.
        try:
            for f in api.list_files().files or []:
                api.delete_file(f.file_id)
        except ServiceResponseException:
            pass  # a failing store; the uploads will say more
        seq = 0
        while not self.stop_event.is_set():
            seq += 1
            pick = rng.random()
            if pick < 0.45:
                device_id = f"a{r}x{seq}"
                with led.lock:
                    led.devices_add_sent.add(device_id)
                try:
                    api.client.add_device(AddDeviceRequest(body=AddDevice(
                        node_id=device_id, product_id="crash", device_id=device_id)))
                except ServiceResponseException as e:
                    self._refusal(device_id, e)
                    continue
                with led.lock:
                    led.devices_added.add(device_id)
                    led.deletable.append(device_id)
                led.ack()
            elif pick < 0.75:
                # Mostly small; now and then big enough for the registry executor to be killed mid-task.
                n = rng.randint(100, 400) if rng.random() < 0.1 else rng.randint(2, 8)
                ids = [f"c{r}x{seq}d{i}" for i in range(n)]
                sheet = write_xlsx(self.workdir / f"devices-{r}-{seq}.xlsx", ["node_id", "product_id", "device_id"],
                                   [[d, "crash", d] for d in ids])
                try:
                    file_id = api.upload(sheet).file_id
                except ServiceResponseException as e:
                    self._refusal(f"upload {sheet.name}", e)
                    continue
                name = f"r{r}_cd{seq}"
                self._create(api, TaskRec(name, "createDevices", ids, round=r),
                             {"task_name": name, "task_type": "createDevices", "document_source": file_id})
                try:
                    api.delete_file(file_id)
                except ServiceResponseException:
                    pass
            else:
                with led.lock:
                    n = min(len(led.deletable), rng.randint(1, 4))
                    # Never named again, whatever the answer: a second delete of one device would be refused.
                    doomed = [led.deletable.pop(rng.randrange(len(led.deletable))) for _ in range(n)]
                if not doomed:
                    continue
                name = f"r{r}_dd{seq}"
                self._create(api, TaskRec(name, "deleteDevices", doomed, round=r),
                             {"task_name": name, "task_type": "deleteDevices", "targets": doomed})

    # --- a worker ----------------------------------------------------------------------------------------------

    def _worker(self, url: str, worker_id: str, rng: random.Random) -> None:
        native = NativeClient(url, self.creds)
        led = self.ledger
        while not self.stop_event.is_set():
            status, body = native.claim(worker_id, WORKER_TYPES, rng.randint(1, 20), LEASE_SECONDS, wait_seconds=1)
            if status != 200:
                if status < 500:
                    led.violation(f"claim refused: {status} {body}")
                self.stop_event.wait(0.05)  # the store is failing (a full disk, no database): don't spin
                continue
            subs = body.get("sub_tasks") or []
            results = []
            with led.lock:
                for s in subs:
                    sid, attempt = db_id(s["sub_task_id"]), s["attempt"]
                    if sid in led.succeeded:
                        led.violations.append(f"sub-task {sid} handed out again (attempt {attempt}) after its "
                                              f"success was accepted")
                    before = led.claims.setdefault(sid, [])
                    if before and attempt <= before[-1]:
                        led.violations.append(f"sub-task {sid} handed out as attempt {attempt} after attempt "
                                              f"{before[-1]}: one run handed out twice")
                    before.append(attempt)
            if subs and rng.random() < 0.3:
                s = rng.choice(subs)
                status, body = native.heartbeat(s["sub_task_id"], s["attempt"], LEASE_SECONDS, rng.randint(0, 100))
                # 409: the lease is lost (a user stopped the sub-task meanwhile).
                if status not in (200, 409) and status < 500:
                    led.violation(f"heartbeat of {s['sub_task_id']} #{s['attempt']} refused: {status} {body}")
            for s in subs:
                if s["target"].startswith("bad_") and s["attempt"] == 1:
                    results.append({"sub_task_id": s["sub_task_id"], "attempt": s["attempt"], "status": "failed",
                                    "error_code": "CRASH_BAD", "error_msg": "first attempts on bad_* fail"})
                else:
                    results.append({"sub_task_id": s["sub_task_id"], "attempt": s["attempt"],
                                    "status": "succeeded", "output": f"ran {s['sub_task_id']} #{s['attempt']}"})
            # Now and then a worker "dies" with its claim: the leases expire and the sub-tasks run again.
            if not results or rng.random() < 0.08:
                continue
            status, body = native.results(results)
            if status != 200:
                if status < 500:
                    led.violation(f"results refused: {status} {body}")
                continue
            with led.lock:
                for sent, got in zip(results, body["results"]):
                    if got.get("accepted") and sent["status"] == "succeeded":
                        led.succeeded[db_id(sent["sub_task_id"])] = sent["output"]
            led.ack()


# ---- checks -----------------------------------------------------------------------------------------------------


def ledger_problems(db: StoreSql, led: Ledger, project_id: str, final: bool = False) -> list[str]:
    """The store against what the server acknowledged."""
    problems = list(led.violations)
    p = sql_str(project_id)
    rows = db.rows(f"SELECT id, name, kind, state, need_confirm FROM tasks WHERE project_id = {p} AND service IS NULL")
    names = Counter(r[1] for r in rows)
    problems += [f"task {n!r} stored {c} times" for n, c in names.items() if c > 1]
    stored = {r[1]: r for r in rows}
    with led.lock:
        tasks = dict(led.tasks)
        refused = dict(led.refused)
        stopped = set(led.stopped)
        ops = dict(led.ops)
        succeeded = dict(led.succeeded)
        added, add_sent = set(led.devices_added), set(led.devices_add_sent)
    for name, rec in tasks.items():
        row = stored.get(name)
        if rec.task_id is not None and row is None:
            problems.append(f"acknowledged create {name} (task {rec.task_id}) is lost")
        elif rec.task_id is not None and int(row[0]) != rec.task_id:
            problems.append(f"task {name} is stored as {row[0]}, acknowledged as {rec.task_id}")
        if name in refused and row is not None:
            problems.append(f"refused create {name} ({refused[name]}) was stored")
    problems += [f"task {n!r} stored, never sent" for n in stored if n not in tasks]
    by_id = {int(r[0]): r for r in rows}
    for task_id in stopped:
        if by_id.get(task_id) and by_id[task_id][3] != "stopped":
            problems.append(f"task {task_id} was stopped (acknowledged) but is {by_id[task_id][3]}")

    subs = db.rows(f"SELECT s.id, s.task_id, t.kind, s.target, s.state, s.output, s.error_code FROM sub_tasks s "
                   f"JOIN tasks t ON t.id = s.task_id WHERE t.project_id = {p}")
    targets_of: dict[int, set[str]] = {}
    for sid, task_id, kind, target, state, output, error_code in subs:
        targets_of.setdefault(int(task_id), set()).add(target)
        if kind == "createDevices" and error_code == "IOTDA.014031":
            problems.append(f"createDevices sub-task {sid} ({target}) ran twice: the device already existed")
        if kind == "deleteDevices" and error_code == "IOTDA.014000":
            problems.append(f"deleteDevices sub-task {sid} ({target}) ran twice: the device was already gone")
    for rec in tasks.values():
        if rec.task_id is not None and rec.task_id in by_id and targets_of.get(rec.task_id, set()) != set(rec.targets):
            problems.append(f"task {rec.name}: sub-tasks for {sorted(targets_of.get(rec.task_id, ()))}, "
                            f"created with {sorted(rec.targets)}")
    sub_by_id = {int(s[0]): s for s in subs}
    for sid, output in succeeded.items():
        s = sub_by_id.get(sid)
        if s is None or s[4] != "succeeded" or s[5] != output:
            problems.append(f"sub-task {sid}: its success ({output!r}) was accepted, now "
                            f"{(s[4], s[5]) if s else 'gone'}")

    created = {s[3] for s in subs if s[2] == "createDevices" and s[4] == "succeeded"}
    deleted = {s[3] for s in subs if s[2] == "deleteDevices" and s[4] == "succeeded"}
    devices = {r[0] for r in db.rows(f"SELECT device_id FROM devices WHERE project_id = {p}")}
    must = (added | created) - deleted
    may = (add_sent | created) - deleted
    if must - devices:
        problems.append(f"devices lost: {sorted(must - devices)[:20]}")
    if devices - may:
        problems.append(f"devices that should not exist (created without a successful sub-task, or deleted): "
                        f"{sorted(devices - may)[:20]}")

    op_rows = db.rows(f"SELECT id, document_json, state FROM tasks WHERE project_id = {p} AND service IS NOT NULL")
    op_tokens = Counter(json.loads(r[1] or "{}").get("token") for r in op_rows)
    problems += [f"operation {t} stored {c} times" for t, c in op_tokens.items() if c > 1]
    op_ids = {int(r[0]) for r in op_rows}
    problems += [f"acknowledged operation {t} ({i}) is lost" for t, i in ops.items()
                 if i is not None and i not in op_ids]
    problems += [f"operation {t} stored, never sent" for t in op_tokens if t not in ops]

    if final:
        unfinished = [r for r in rows + [(r[0], "op", "RESTART", r[2], None) for r in op_rows]
                      if r[3] not in FINAL_TASK_STATES]
        if unfinished:
            problems.append(f"{len(unfinished)} tasks unfinished after the drain: {unfinished[:10]}")
    return problems


def assert_no_problems(problems: list[str], where: str) -> None:
    assert not problems, f"{where}: {len(problems)} problems:\n  " + "\n  ".join(problems[:40])


def check_after_restart(api: Api, led: Ledger, recs: list[TaskRec]) -> list[str]:
    """Through the official SDK: the acknowledged tasks are there, their progress adds up to their targets."""
    problems = []
    with led.lock:
        stopped = set(led.stopped)
    for rec in recs:
        try:
            task = api.show(f"{rec.task_id:024x}").batchtask
        except ServiceResponseException as e:
            problems.append(f"acknowledged task {rec.name} ({rec.task_id:024x}): {e.status_code} {e.error_code}")
            continue
        prog = progress(task)
        parts = sum(v for k, v in prog.items() if k != "total")
        if prog["total"] != len(rec.targets) or parts != prog["total"]:
            problems.append(f"task {rec.name}: progress {prog} for {len(rec.targets)} targets")
        if rec.task_id in stopped and task.status != "Stopped":
            problems.append(f"task {rec.name}: stopped (acknowledged), shown {task.status}")
    return problems


def sample_of(led: Ledger, rng: random.Random, newer_than_round: int, old_sample: int = 20) -> list[TaskRec]:
    with led.lock:
        acked = [t for t in led.tasks.values() if t.task_id is not None]
    new = [t for t in acked if t.round >= newer_than_round]
    old = [t for t in acked if t.round < newer_than_round]
    return new + rng.sample(old, min(old_sample, len(old)))


def unfinished_count(db: StoreSql, project_id: str) -> int:
    final = ", ".join(sql_str(s) for s in FINAL_TASK_STATES)
    return int(db.scalar(f"SELECT COUNT(*) FROM tasks WHERE project_id = {sql_str(project_id)} "
                         f"AND state NOT IN ({final})"))


def with_live(db: StoreSql, fn):
    view = db.live()
    try:
        return fn(view)
    finally:
        view.close()


# ---- kill -9, round after round ---------------------------------------------------------------------------------


def test_kill_9_during_mixed_load(tmp_path):
    print(f"TASKD_CRASH_SEED={SEED} TASKD_CRASH_ROUNDS={ROUNDS}")
    rng = random.Random(SEED)
    srv = TaskdServer(tmp_path / "data", name="taskd-crash")
    creds = srv.bootstrap  # made sure of at every start
    led = Ledger()
    workdir = tmp_path / "sheets"
    workdir.mkdir()
    load = Load(led, creds, workdir, SEED)
    db = StoreSql.of(srv)
    began = time.monotonic()
    try:
        for r in range(ROUNDS):
            srv.start()
            api = Api(srv.url, creds)
            assert_no_problems(check_after_restart(api, led, sample_of(led, rng, r - 1)),
                               f"{tag(r)} after the restart")
            with led.lock:
                acks_at_start = led.acks
            kill_after = rng.randint(0, 60)
            load.start(srv.url, r)
            with led.lock:
                reached = led.lock.wait_for(lambda: led.acks - acks_at_start >= kill_after, timeout=60)
            assert reached, f"{tag(r)} only {led.acks - acks_at_start} of {kill_after} writes acknowledged in 60 s"
            srv.kill()
            load.stop()
            view = db.snapshot(tmp_path / f"check-{r}")
            try:
                assert_no_problems(view.integrity_problems() + store_invariant_problems(view)
                                   + ledger_problems(view, led, creds.project_id), f"{tag(r)} after SIGKILL")
            finally:
                view.close()

        # The last restart: the engine finishes what every killed round left (expired leases, due retries, held
        # tasks once confirmed), then the server stops cleanly.
        srv.start()
        api = Api(srv.url, creds)
        # Held tasks (need_confirm, and the sub-tasks a retry queued on them) wait for a confirm.
        held = with_live(db, lambda v: v.rows(
            f"SELECT id FROM tasks WHERE project_id = {sql_str(creds.project_id)} AND service IS NULL "
            f"AND kind IN ('firmwareUpgrade', 'softwareUpgrade') AND state IN ('waiting', 'processing')"))
        for (task_id,) in held:
            try:
                api.confirm(f"{int(task_id):024x}")
            except ServiceResponseException as e:
                assert e.status_code == 403, e
        load.start(srv.url, ROUNDS, writers=False)
        drain_began = time.monotonic()
        wait_for(lambda: with_live(db, lambda v: unfinished_count(v, creds.project_id)) == 0,
                 f"{tag()} the engine to finish every task after the last restart", deadline_s=120)
        drained = time.monotonic() - drain_began
        load.stop()
        assert srv.stop() == 0, "taskd did not stop cleanly"
        view = db.snapshot(tmp_path / "check-final")
        try:
            assert_no_problems(view.integrity_problems() + store_invariant_problems(view)
                               + ledger_problems(view, led, creds.project_id, final=True), f"{tag()} at the end")
            # The poison-pill guard: the fifth expired lease fails a sub-task. Killing the server while it (or a
            # worker) holds leases expires them, so long runs see a few; they are reported, not errors.
            lease_expired = dict(view.rows(
                "SELECT t.kind, COUNT(*) FROM sub_tasks s JOIN tasks t ON t.id = s.task_id "
                "WHERE s.error_code = 'LEASE_EXPIRED' GROUP BY t.kind"))
        finally:
            view.close()
        with led.lock:
            acked = sum(1 for t in led.tasks.values() if t.task_id is not None)
            store = "PostgreSQL" if db.is_postgres else "SQLite"
            FIGURES.append(f"kill -9 ({store}, seed {SEED}): {ROUNDS} rounds in {time.monotonic() - began:.1f} s "
                           f"(final drain {drained:.1f} s): {len(led.tasks)} creates sent, {acked} acknowledged, "
                           f"{len(led.devices_added)} devices added, {len(led.succeeded)} worker successes accepted, "
                           f"{sum(len(a) for a in led.claims.values())} claims, {led.errors_5xx} 5xx, "
                           f"sub-tasks failed LEASE_EXPIRED: {lease_expired or 'none'}")
        took = time.monotonic() - began
        if took > BUDGET_S:
            FIGURES.append(f"kill -9 ({store}): OVER BUDGET, {took:.0f} s > {BUDGET_S:.0f} s")
            warnings.warn(f"the kill -9 rounds took {took:.0f} s, over their budget of {BUDGET_S:.0f} s")
    finally:
        load.stop_event.set()
        srv.kill()
        srv.drop_database()


# ---- disk full --------------------------------------------------------------------------------------------------


def fill(path: Path) -> None:
    """Writes `path` until the file system refuses another byte."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e


@pytest.mark.skipif(bool(POSTGRES_URL), reason="the embedded store's disk (runs in the SQLite pass)")
def test_disk_full_refuses_writes_and_heals_without_a_restart(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs for the data directory (CI runs the suite as root)")
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {res.stderr.strip()}")
    srv = TaskdServer(mnt / "data", name="taskd-diskfull")
    srv.log_path = tmp_path / "taskd-diskfull.log"  # the log must not share the full disk
    load = None
    try:
        srv.start()
        pid = srv.proc.pid
        api = Api(srv.url, srv.bootstrap)
        native = NativeClient(srv.url, srv.bootstrap)
        led = Ledger()
        seq = 0

        def create(n_targets: int):
            """Creates a task; returns None when acknowledged, else the refusal."""
            nonlocal seq
            seq += 1
            name = f"full_{seq}"
            targets = [f"dev_{i}" for i in range(n_targets)]
            rec = TaskRec(name, "firmwareUpgrade", targets)
            with led.lock:
                led.tasks[name] = rec
            try:
                task_id = db_id(api.create(api.upgrade_body(targets, task_name=name)).task_id)
            except ServiceResponseException as e:
                return e
            with led.lock:
                rec.task_id = task_id
            return None

        for _ in range(5):
            assert create(3) is None
        # The load runs on through the full disk and its recovery.
        workdir = tmp_path / "sheets"
        workdir.mkdir()
        load = Load(led, srv.bootstrap, workdir, SEED)
        load.start(srv.url, 0)
        with led.lock:
            assert led.lock.wait_for(lambda: led.acks >= 20, timeout=60), "no load before the disk filled"
        filler = mnt / "filler"
        fill(filler)

        # Readiness says so (it checks at most once a second); liveness does not care.
        status, body = wait_for(lambda: (lambda s: s if s[0] == 503 else None)(http_get(srv.url + "/readyz")[::2]),
                                "/readyz to report the full disk", deadline_s=10)
        assert b'"reason"' in body and b"full" in body, body
        assert http_get(srv.url + "/livez")[0] == 200

        # Writes are refused in the dialect's envelope. Big tasks need new pages; small ones may still fit in
        # space SQLite had already.
        refusal = None
        for tries in range(1, 41):
            refusal = create(3000)
            if refusal is not None:
                break
        assert refusal is not None, "every write succeeded on a full disk"
        assert refusal.status_code >= 500 and refusal.error_code.startswith("IOTDA."), refusal
        with led.lock:
            led.ops["op_full"] = None
        status, body = native.create_operation({"service": "rabbitmq", "instance_id": "rmq-full", "type": "RESTART",
                                                "params": {"token": "op_full", "pad": "x" * 60000}})
        if status == 201:
            with led.lock:
                led.ops["op_full"] = db_id(body["operation_id"])
        assert status == 201 or (status >= 500 and body.get("error_code", "").startswith("TASKD.")), (status, body)
        assert srv.proc.poll() is None, "taskd died on a full disk"

        filler.unlink()
        freed = time.monotonic()
        wait_for(lambda: http_get(srv.url + "/readyz")[0] == 200, "/readyz to recover once space is free",
                 deadline_s=30)
        recovered = time.monotonic() - freed
        assert create(3000) is None, "writes did not resume after space was freed"
        assert create(3) is None
        with led.lock:
            at = led.acks
            assert led.lock.wait_for(lambda: led.acks >= at + 20, timeout=60), "the load did not resume"
        load.stop()
        assert srv.proc.poll() is None and srv.proc.pid == pid  # the same process: no restart

        assert_no_problems(check_after_restart(api, led, [t for t in led.tasks.values() if t.task_id is not None]),
                           "after the disk was freed")
        FIGURES.append(f"disk full (16 MiB tmpfs): a 3,000-target create refused after {tries} tries "
                       f"({refusal.status_code} {refusal.error_code}), {led.errors_5xx} 5xx to the load, /readyz "
                       f"200 again {recovered:.1f} s after the space was freed, same process")
        assert srv.stop() == 0
        view = StoreSql.of(srv).snapshot(tmp_path / "check")
        try:
            assert_no_problems(view.integrity_problems() + store_invariant_problems(view)
                               + ledger_problems(view, led, srv.bootstrap.project_id), "after the disk-full run")
        finally:
            view.close()
    finally:
        if load is not None:
            load.stop_event.set()
        srv.kill()
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# ---- PostgreSQL stopped and started under load ------------------------------------------------------------------


@pytest.mark.skipif(not POSTGRES_URL, reason="runs in the PostgreSQL pass of scripts/test (on a private cluster)")
def test_postgres_stopped_and_started_under_load(tmp_path, private_postgres):
    print(f"TASKD_CRASH_SEED={SEED}")
    srv = TaskdServer(tmp_path / "data", name="taskd-pgstop", database_url=private_postgres.url)
    creds = srv.bootstrap
    led = Ledger()
    workdir = tmp_path / "sheets"
    workdir.mkdir()
    load = Load(led, creds, workdir, SEED)
    rng = random.Random(SEED)
    slowest = 0.0
    try:
        srv.start()
        pid = srv.proc.pid
        api = Api(srv.url, creds)
        native = NativeClient(srv.url, creds)
        load.start(srv.url, 0)
        for mode in ("fast", "immediate"):
            with led.lock:
                until = led.acks + rng.randint(5, 40)
                assert led.lock.wait_for(lambda: led.acks >= until, timeout=60), \
                    f"{tag()} no load before stopping PostgreSQL ({mode})"
            private_postgres.stop(mode)

            # While it is down: refusals in each dialect's envelope, within the store's acquire timeout (5 s), far
            # from the 60 s request timeout; readiness says why, liveness stays up.
            name = f"while_down_{mode}"
            with led.lock:
                led.tasks[name] = TaskRec(name, "firmwareUpgrade", ["dev_1"])
            began = time.monotonic()
            with pytest.raises(ServiceResponseException) as down:
                api.create(api.upgrade_body(["dev_1"], task_name=name))
            slowest = max(slowest, time.monotonic() - began)
            assert down.value.status_code in (500, 503) and down.value.error_code.startswith("IOTDA."), down.value
            began = time.monotonic()
            status, body = native.claim("pg-down", WORKER_TYPES, 1)
            slowest = max(slowest, time.monotonic() - began)
            assert status in (500, 503) and body.get("error_code", "").startswith("TASKD."), (status, body)
            assert slowest < 60, f"a request hung {slowest:.1f} s (past the request timeout) while PostgreSQL was down"
            status, body = wait_for(lambda: (lambda s: s if s[0] == 503 else None)(
                http_get(srv.url + "/readyz", timeout=15)[::2]), "/readyz to say the database is down", deadline_s=15)
            assert b'"reason"' in body, body
            assert http_get(srv.url + "/livez")[0] == 200

            private_postgres.start()
            wait_for(lambda: http_get(srv.url + "/readyz", timeout=15)[0] == 200,
                     f"/readyz after PostgreSQL restarted ({mode})", deadline_s=60)
            with led.lock:
                at = led.acks
                assert led.lock.wait_for(lambda: led.acks >= at + 10, timeout=60), \
                    f"{tag()} writes did not resume after PostgreSQL restarted ({mode})"
            assert srv.proc.poll() is None and srv.proc.pid == pid, "taskd restarted"
        load.stop()
        assert srv.stop() == 0
        db = StoreSql(database_url=private_postgres.url)
        assert_no_problems(db.integrity_problems() + store_invariant_problems(db)
                           + ledger_problems(db, led, creds.project_id), f"{tag()} after two PostgreSQL stops")
        FIGURES.append(f"PostgreSQL stopped twice under load (seed {SEED}): {led.acks} writes acknowledged, "
                       f"{led.errors_5xx} 5xx, slowest refusal {slowest:.2f} s")
    finally:
        load.stop_event.set()
        srv.kill()
