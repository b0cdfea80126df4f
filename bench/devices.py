#!/usr/bin/env python3
"""Device-channel benchmarks (BENCHMARKS.md, "Devices over MQTT"): one `taskd serve` (embedded store) and a fleet of
`taskd devices simulate` devices, both real processes on this machine, over real MQTT on loopback.

Measures, in one run:
  * connect storm: N registered devices connecting at once (the simulator's time from its start to the last CONNACK);
  * taskd's RSS while holding the N connections (VmRSS of the server process);
  * a createCommands batch task over the N online devices, created -> finished, through the official IoTDA SDK;
  * command round trip through the REST API (CreateCommand, synchronous), p50 and p99 of sequential calls.

Run with the SDK venv (scripts/sdk-venv) and a release build:
    cargo build --release -p taskd
    .venv-sdk/bin/python bench/devices.py --taskd target/release/taskd --count 10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkiotda.v5 import (CreateBatchTask, CreateBatchTaskRequest, CreateCommandRequest,
                                    DeviceCommandRequest, IoTDAClient, ShowBatchTaskRequest)

MQTT_HOST = "127.0.0.2"  # 127.0.0.1:1883 is Mosquitto's on the project's machines


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_ready(url: str, deadline_s: float = 30):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("taskd did not become ready")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--taskd", default="target/release/taskd")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--round-trips", type=int, default=200)
    args = ap.parse_args()
    raise_fd_limit()

    project_id, ak, sk = secrets.token_hex(16), "BENCH" + secrets.token_hex(8).upper(), secrets.token_hex(20)
    work = tempfile.mkdtemp(prefix="taskd-bench-devices-")
    http_port, mqtt_port = free_port("127.0.0.1"), free_port(MQTT_HOST)
    url = f"http://127.0.0.1:{http_port}"
    env = dict(os.environ, TASKD_BOOTSTRAP_PROJECT_ID=project_id, TASKD_BOOTSTRAP_AK=ak, TASKD_BOOTSTRAP_SK=sk,
               RUST_LOG="warn")
    server = subprocess.Popen([args.taskd, "serve", "--listen", f"127.0.0.1:{http_port}", "--data-dir",
                               f"{work}/data", "--mqtt-listen", f"{MQTT_HOST}:{mqtt_port}"],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(f"{work}/server.log", "wb"),
                              preexec_fn=raise_fd_limit)
    sim_env = dict(os.environ, TASKD_ENDPOINT=url, TASKD_AK=ak, TASKD_SK=sk, TASKD_PROJECT_ID=project_id)
    sim_base = [args.taskd, "devices", "simulate", "--mqtt", f"{MQTT_HOST}:{mqtt_port}", "--count", str(args.count),
                "--json", "--stats-interval", "0"]
    results = {"count": args.count}
    try:
        wait_ready(url)
        # Register (not measured): the devices exist for the storm below.
        t = time.monotonic()
        subprocess.run(sim_base + ["--duration", "1"], env=sim_env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, preexec_fn=raise_fd_limit)
        results["register_secs"] = round(time.monotonic() - t, 1)

        # The storm, then the fleet stays up for the task and the round trips.
        fleet = subprocess.Popen(sim_base + ["--skip-register", "--duration", "600"], env=sim_env,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=raise_fd_limit)
        # The simulator reports its storm time when it stops; taskd's own view: wait until taskd holds them all.
        start = time.monotonic()
        client = IoTDAClient.new_builder().with_credentials(BasicCredentials(ak, sk, project_id)) \
            .with_endpoint(url).with_http_config(HttpConfig.get_default_config()).build()
        probe = f"sim-{args.count}"
        while True:
            try:
                client.create_command(CreateCommandRequest(device_id=probe, body=DeviceCommandRequest(paras={})))
                break
            except Exception:  # noqa: BLE001 - offline until connected
                if time.monotonic() - start > 120:
                    raise
                time.sleep(0.1)
        time.sleep(3)  # let the rest settle before sampling memory (a benchmark, not a test)
        results["server_rss_mib_connected"] = round(rss_mib(server.pid), 1)

        # createCommands over every device, created -> finished.
        targets = [f"sim-{i}" for i in range(1, args.count + 1)]
        t0 = time.monotonic()
        task = client.create_batch_task(CreateBatchTaskRequest(body=CreateBatchTask(
            task_name="bench_commands", task_type="createCommands", targets=targets,
            document={"service_id": "Switch", "command_name": "PING", "paras": {}})))
        peak_rss = 0.0
        while True:
            shown = client.show_batch_task(ShowBatchTaskRequest(task_id=task.task_id, limit=1))
            peak_rss = max(peak_rss, rss_mib(server.pid))
            if shown.batchtask.status not in ("Initializing", "Waitting", "Processing"):
                break
            time.sleep(0.05)
        secs = time.monotonic() - t0
        p = shown.batchtask.task_progress
        results.update(create_commands_secs=round(secs, 2), create_commands_per_sec=round(args.count / secs),
                       create_commands_success=p.success, create_commands_fail=p.fail,
                       server_rss_mib_peak_during_task=round(peak_rss, 1))

        # Round trips, one after the other.
        lat = []
        for i in range(args.round_trips):
            t = time.perf_counter()
            client.create_command(CreateCommandRequest(device_id=f"sim-{1 + i % args.count}",
                                                       body=DeviceCommandRequest(paras={"i": i})))
            lat.append((time.perf_counter() - t) * 1000)
        lat.sort()
        results.update(round_trip_ms_p50=round(statistics.median(lat), 2),
                       round_trip_ms_p99=round(lat[int(len(lat) * 0.99) - 1], 2))

        fleet.send_signal(signal.SIGTERM)
        out, _ = fleet.communicate(timeout=60)
        summary = json.loads(out.decode().strip().splitlines()[-1])
        results["connect_storm_secs"] = summary.get("all_connected_secs")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    json.dump(results, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
