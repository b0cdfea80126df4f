#!/usr/bin/env python3
"""Sub-task throughput against a peer, side by side in one run (issue 14, item 1; BENCHMARKS.md, "Against a peer").

Each round runs, one after the other on the same PostgreSQL server, each on a freshly created database:

  1. graphile-worker 0.18 (npm, installed into bench/graphile by `npm ci` when missing) draining N no-op jobs:
     one worker pool, concurrency 24, batched local queue (500) and batched completions (completeJobBatchDelay 0);
     the jobs are inserted in one statement (graphile_worker.add_jobs) before the clock starts, which runs from the
     first job handed to the task function until the pool has stopped with its last completions written back
     (bench/graphile/drain.mjs);
  2. `taskd bench throughput --nodes 1 --executors 4 --sub-tasks N --tasks 20`: the engine in process, executors
     that claim batches of 500 and report them succeeded (tasks created before its clock starts);
  3. the same through the HTTP worker protocol: a real `taskd serve` on its own fresh database, 20 firmwareUpgrade
     tasks of N/20 targets created over the signed IoTDA API before the clock starts, then W worker processes
     (default 4; this script, forked) claiming batches of 500 over HTTP (`POST /taskd/v1/{project}/claims`) and
     reporting them succeeded (`POST .../results`), no command per sub-task. The clock runs from releasing the
     workers to the last results batch answered; at the end every task must be Success with N/20 successes.

It prints each round and, over the rounds, the spread (min, median, max) of both taskd rates and of their ratios
to graphile-worker in the same round. Python 3.11 standard library, `psql`, Node.js (20+) and npm.

    cargo build --release -p taskd
    python3 bench/peer_throughput.py --runs 3            # N = 100,000
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GRAPHILE_DIR = HERE / "graphile"
TASKS = 20  # tasks the N sub-tasks are spread over, on both taskd sides (as `taskd bench throughput` defaults)
TASK_TYPE = "firmwareUpgrade"  # run by workers, never by taskd itself
BATCH = 500


# ---------------------------------------------------------------------------------------------------- databases

def psql(admin_url: str, sql: str) -> str:
    return subprocess.run(["psql", admin_url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True,
                          capture_output=True, text=True).stdout.strip()


def database_url(admin_url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(admin_url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


class FreshDatabase:
    """A database created for one measurement and dropped after it."""

    def __init__(self, admin_url: str, prefix: str):
        if prefix not in ("taskd_peer", "gw_peer"):
            raise ValueError(prefix)
        self.admin_url = admin_url
        self.name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
        self.url = database_url(admin_url, self.name)

    def __enter__(self) -> str:
        psql(self.admin_url, f'create database "{self.name}"')
        return self.url

    def __exit__(self, *exc):
        psql(self.admin_url, f'drop database if exists "{self.name}" with (force)')


# ---------------------------------------------------------------------------------------------------- graphile-worker

def ensure_graphile() -> str:
    pkg = GRAPHILE_DIR / "node_modules" / "graphile-worker" / "package.json"
    if not pkg.exists():
        print("installing graphile-worker (npm ci in bench/graphile)", file=sys.stderr)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=GRAPHILE_DIR, check=True)
    return json.loads(pkg.read_text())["version"]


def run_graphile(admin_url: str, n: int, concurrency: int, local_queue: int) -> dict:
    with FreshDatabase(admin_url, "gw_peer") as url:
        out = subprocess.run(["node", "drain.mjs", url, str(n), str(concurrency), str(local_queue)],
                             cwd=GRAPHILE_DIR, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------- taskd in process

THROUGHPUT_LINE = re.compile(r"\| (\d+) sub-tasks in ([0-9.]+) s \| (\d+) sub-tasks/s \|")


def run_taskd_inproc(admin_url: str, taskd: str, n: int, executors: int) -> dict:
    with FreshDatabase(admin_url, "taskd_peer") as url:
        out = subprocess.run([taskd, "bench", "throughput", "--database-url", url, "--nodes", "1", "--executors",
                              str(executors), "--batch", str(BATCH), "--sub-tasks", str(n), "--tasks", str(TASKS)],
                             check=True, capture_output=True, text=True, env=dict(os.environ, RUST_LOG="warn"))
    m = THROUGHPUT_LINE.search(out.stdout)
    if not m or int(m.group(1)) != n:
        raise RuntimeError(f"unexpected output of taskd bench throughput:\n{out.stdout}\n{out.stderr}")
    secs = float(m.group(2))
    return {"sub_tasks": n, "secs": secs, "rate": n / secs}


# ---------------------------------------------------------------------------------------------------- HTTP worker protocol

def sdk_date() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def signed_headers(method: str, path: str, query: list[tuple[str, str]], host: str, body: bytes, ak: str,
                   sk: str) -> tuple[dict, str]:
    """SDK-HMAC-SHA256 as the Huawei SDKs sign (crates/taskd-signature/src/sign.rs): (headers to send, query)."""
    headers = {"Content-Type": "application/json", "Host": host, "X-Sdk-Date": sdk_date()}
    segments = urllib.parse.unquote(path).split("/")
    uri = "/".join(urllib.parse.quote(s, safe="~") for s in segments)
    if not uri.endswith("/"):
        uri += "/"
    qs = "&".join(f"{urllib.parse.quote(k, safe='~')}={urllib.parse.quote(v, safe='~')}" for k, v in sorted(query))
    names = sorted(h.lower() for h in headers)
    lowered = {k.lower(): v for k, v in headers.items()}
    canonical = "\n".join([method, uri, qs, "".join(f"{k}:{lowered[k].strip()}\n" for k in names), ";".join(names),
                           hashlib.sha256(body).hexdigest()])
    to_sign = f"SDK-HMAC-SHA256\n{headers['X-Sdk-Date']}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders={';'.join(names)}, Signature={signature}"
    return headers, qs


class Api:
    """One keep-alive connection, every request signed."""

    def __init__(self, port: int, ak: str, sk: str):
        self.host, self.port, self.ak, self.sk = "127.0.0.1", port, ak, sk
        self.conn = http.client.HTTPConnection(self.host, port, timeout=120)

    def call(self, method: str, path: str, body=None, query=()) -> tuple[int, dict]:
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers, qs = signed_headers(method, path, list(query), f"{self.host}:{self.port}", raw, self.ak, self.sk)
        self.conn.request(method, path + ("?" + qs if qs else ""), body=raw or None, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, (json.loads(data) if data else {})


def http_worker(index: int, port: int, ak: str, sk: str, project: str, total: int, go, done, out):
    """One worker process: claim a batch, report it all succeeded, until `done` reaches `total`."""
    api = Api(port, ak, sk)
    api.conn.connect()
    claims = reported = 0
    last = None
    claim = {"protocol": 2, "worker_id": f"peer-bench/{index}", "task_types": [TASK_TYPE], "max": BATCH,
             "lease_seconds": 300, "wait_seconds": 1}
    go.wait()
    try:
        while done.value < total:
            status, answer = api.call("POST", f"/taskd/v1/{project}/claims", claim)
            if status != 200:
                raise RuntimeError(f"claim: HTTP {status} {answer}")
            claims += 1
            subs = answer["sub_tasks"]
            if not subs:
                continue
            results = [{"sub_task_id": s["sub_task_id"], "attempt": s["attempt"], "status": "succeeded"}
                       for s in subs]
            status, answer = api.call("POST", f"/taskd/v1/{project}/results", {"results": results})
            if status != 200:
                raise RuntimeError(f"results: HTTP {status} {answer}")
            accepted = sum(1 for r in answer["results"] if r.get("accepted"))
            if accepted != len(results):
                raise RuntimeError(f"results: {len(results) - accepted} of {len(results)} not accepted")
            last = time.monotonic()
            reported += accepted
            with done.get_lock():
                done.value += accepted
        t = os.times()
        out.put({"index": index, "claims": claims, "reported": reported, "last": last,
                 "cpu_secs": t.user + t.system})
    except Exception as e:  # noqa: BLE001 - reported to the parent, which fails the run
        out.put({"index": index, "error": repr(e)})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_secs(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_taskd_http(admin_url: str, taskd: str, n: int, workers: int) -> dict:
    per_task = n // TASKS
    project, ak, sk = secrets.token_hex(16), "PEER" + secrets.token_hex(8).upper(), secrets.token_hex(20)
    port = free_port()
    work = tempfile.mkdtemp(prefix="taskd-peer-")
    env = dict(os.environ, TASKD_BOOTSTRAP_PROJECT_ID=project, TASKD_BOOTSTRAP_AK=ak, TASKD_BOOTSTRAP_SK=sk,
               RUST_LOG="warn")
    with FreshDatabase(admin_url, "taskd_peer") as url:
        # Caps lifted as `taskd bench throughput` lifts them: 4 workers x 500 would sit at the default per-project cap.
        server = subprocess.Popen([taskd, "serve", "--listen", f"127.0.0.1:{port}", "--database-url", url,
                                   "--data-dir", f"{work}/data", "--max-running", "1000000",
                                   "--max-running-per-project", "1000000"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=open(f"{work}/server.log", "wb"))
        try:
            api = Api(port, ak, sk)
            end = time.monotonic() + 60
            while True:
                try:
                    api.conn.request("GET", "/healthz")
                    resp = api.conn.getresponse()
                    resp.read()
                    if resp.status == 200:
                        break
                except OSError:
                    api.conn.close()
                if server.poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"taskd serve did not start; see {work}/server.log")
                time.sleep(0.05)

            task_ids = []
            for t in range(TASKS):
                body = {"task_name": f"peer_{t}", "task_type": TASK_TYPE,
                        "targets": [f"dev_{t}_{i}" for i in range(per_task)],
                        "document": {"package_ids": ["32822e5744a45ede319d2c50"]}}
                status, answer = api.call("POST", f"/v5/iot/{project}/batchtasks", body)
                if status != 201:
                    raise RuntimeError(f"CreateBatchTask: HTTP {status} {answer}")
                task_ids.append(answer["task_id"])

            ctx = multiprocessing.get_context("fork")
            go, done, out = ctx.Event(), ctx.Value("q", 0), ctx.Queue()
            procs = [ctx.Process(target=http_worker, args=(i, port, ak, sk, project, n, go, done, out))
                     for i in range(workers)]
            for p in procs:
                p.start()
            time.sleep(0.5)  # let them connect
            server_cpu = proc_cpu_secs(server.pid)
            started = time.monotonic()
            go.set()
            reports = [out.get(timeout=600) for _ in procs]
            for p in procs:
                p.join(timeout=60)
            server_cpu = proc_cpu_secs(server.pid) - server_cpu
            errors = [r["error"] for r in reports if "error" in r]
            if errors:
                raise RuntimeError(f"HTTP workers failed: {errors}")
            secs = max(r["last"] for r in reports if r["last"] is not None) - started

            for task_id in task_ids:
                status, answer = api.call("GET", f"/v5/iot/{project}/batchtasks/{task_id}", query=[("limit", "1")])
                task = answer.get("batchtask", {})
                success = task.get("task_progress", {}).get("success")
                if status != 200 or task.get("status") != "Success" or success != per_task:
                    raise RuntimeError(f"task {task_id} ended {task.get('status')} with {task.get('task_progress')}")
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    shutil.rmtree(work, ignore_errors=True)
    return {"sub_tasks": n, "secs": secs, "rate": n / secs, "workers": workers,
            "claims": sum(r["claims"] for r in reports),
            "worker_cpu_secs": sum(r["cpu_secs"] for r in reports), "server_cpu_secs": server_cpu}


# ---------------------------------------------------------------------------------------------------- report

def spread(values: list[float]) -> str:
    return f"min {min(values):,.2f}  median {statistics.median(values):,.2f}  max {max(values):,.2f}"


def rate_spread(values: list[float]) -> str:
    return f"min {min(values):,.0f}  median {statistics.median(values):,.0f}  max {max(values):,.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", "-n", type=int, default=100_000, help="no-op jobs / sub-tasks per side (default 100000)")
    ap.add_argument("--runs", type=int, default=3, help="rounds (graphile-worker, taskd, taskd over HTTP)")
    ap.add_argument("--taskd", default=str(REPO / "target" / "release" / "taskd"))
    ap.add_argument("--admin-url", default="postgres://postgres@127.0.0.1:5432/postgres",
                    help="a database on the server to create and drop the bench databases from")
    ap.add_argument("--executors", type=int, default=4, help="taskd bench throughput --executors (one node)")
    ap.add_argument("--http-workers", type=int, default=4, help="worker processes of the HTTP variant")
    ap.add_argument("--no-http", action="store_true", help="skip the HTTP worker-protocol variant")
    ap.add_argument("--concurrency", type=int, default=24, help="graphile-worker concurrentJobs")
    ap.add_argument("--local-queue", type=int, default=500, help="graphile-worker localQueue.size")
    args = ap.parse_args()
    if args.jobs % TASKS or args.jobs // TASKS > 30_000:
        ap.error(f"--jobs must be a multiple of {TASKS}, at most {TASKS * 30_000}")

    version = ensure_graphile()
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    pg = psql(args.admin_url, "show server_version")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    print(f"conditions: N={args.jobs:,} per side, {args.runs} round(s); {os.cpu_count()} CPUs; "
          f"load average before {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; "
          f"PostgreSQL {pg}; taskd {args.taskd} at {head}; graphile-worker {version} on Node {node}, "
          f"concurrentJobs {args.concurrency}, localQueue.size {args.local_queue}, completeJobBatchDelay 0; "
          f"taskd: 1 node x {args.executors} executors in process, and taskd serve + {args.http_workers} HTTP "
          f"worker processes; batches of {BATCH}; every side on a fresh database", flush=True)

    rounds = []
    for r in range(1, args.runs + 1):
        gw = run_graphile(args.admin_url, args.jobs, args.concurrency, args.local_queue)
        td = run_taskd_inproc(args.admin_url, args.taskd, args.jobs, args.executors)
        line = (f"round {r}: graphile-worker {gw['rate']:,.0f}/s ({gw['secs']:.2f} s) | "
                f"taskd in process {td['rate']:,.0f}/s ({td['secs']:.2f} s), ratio {td['rate'] / gw['rate']:.2f}")
        hp = None
        if not args.no_http:
            hp = run_taskd_http(args.admin_url, args.taskd, args.jobs, args.http_workers)
            line += (f" | taskd over HTTP {hp['rate']:,.0f}/s ({hp['secs']:.2f} s; {hp['claims']} claims; CPU s: "
                     f"server {hp['server_cpu_secs']:.1f}, workers {hp['worker_cpu_secs']:.1f}), "
                     f"ratio {hp['rate'] / gw['rate']:.2f}")
        print(line + f" | load {os.getloadavg()[0]:.2f}", flush=True)
        rounds.append((gw, td, hp))

    gw_rates = [g["rate"] for g, _, _ in rounds]
    td_rates = [t["rate"] for _, t, _ in rounds]
    print(f"graphile-worker /s:          {rate_spread(gw_rates)}")
    print(f"taskd in process /s:         {rate_spread(td_rates)}")
    print(f"ratio taskd/graphile-worker: {spread([t / g for g, t in zip(gw_rates, td_rates)])}")
    if not args.no_http:
        hp_rates = [h["rate"] for _, _, h in rounds]
        print(f"taskd over HTTP /s:          {rate_spread(hp_rates)}")
        print(f"ratio HTTP/graphile-worker:  {spread([h / g for g, h in zip(gw_rates, hp_rates)])}")
    print("goal (issue 14): taskd in process >= 2.0x graphile-worker")


if __name__ == "__main__":
    main()
