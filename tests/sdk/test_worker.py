"""The worker protocol end to end: the official SDK creates, confirms and watches batch tasks while a real
`taskd worker` process runs them, one shell command per sub-task."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from taskd_sdk import TASKD_BIN, Api, expected_progress, progress

# Succeeds with an output naming the target and the package; fails with a message on stderr for dev_bad.
SCRIPT = (
    'echo "upgraded $TASKD_TARGET with $TASKD_DOCUMENT (attempt $TASKD_ATTEMPT)"; '
    '[ "$TASKD_TARGET" != dev_bad ] || { echo "device refused the package" >&2; exit 3; }'
)
FINAL = ("Success", "Fail", "PartialSuccess", "Stopped")


@pytest.fixture
def worker(server, creds):
    procs = []

    def start(*task_types):
        args = [str(TASKD_BIN), "worker", "--endpoint", server.url, "--ak", creds.ak, "--sk", creds.sk,
                "--project-id", creds.project_id, "--concurrency", "4"]
        for t in task_types or ("firmwareUpgrade",):
            args += ["--task-type", t]
        proc = subprocess.Popen(args + ["--", "sh", "-c", SCRIPT], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def stop_worker(proc) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, f"taskd worker exited with {proc.returncode}:\n{out}"
    return out


def wait_until_finished(api, task_id, deadline_s=60.0):
    """Polls the task as a user would (ShowBatchTask) until it is final."""
    end = time.monotonic() + deadline_s
    while True:
        task = api.show(task_id).batchtask
        if task.status in FINAL:
            return task
        assert time.monotonic() < end, f"task {task_id} still {task.status}: {progress(task)}"
        time.sleep(0.05)


def details(api, task_id):
    return {d.target: d for d in api.show(task_id, limit=50).task_details}


def test_a_worker_runs_every_target_once(plain_api, worker):
    proc = worker()
    task_id = plain_api.create_upgrade(targets=["dev_1", "dev_2", "dev_bad"]).task_id
    task = wait_until_finished(plain_api, task_id)
    assert task.status == "PartialSuccess"
    assert progress(task) == expected_progress(total=3, success=2, fail=1)
    d = details(plain_api, task_id)
    assert d["dev_1"].status == "Success"
    assert d["dev_1"].output.startswith("upgraded dev_1 with {") and d["dev_1"].output.endswith("(attempt 1)")
    assert '"package_ids"' in d["dev_1"].output
    assert d["dev_bad"].status == "Fail"
    assert (d["dev_bad"].error.error_code, d["dev_bad"].error.error_msg) == ("EXIT_3", "device refused the package")
    stop_worker(proc)


def test_confirm_releases_a_task_to_the_worker(plain_api, worker):
    proc = worker("softwareUpgrade")
    task_id = plain_api.create_upgrade(targets=["dev_1", "dev_2"], task_type="softwareUpgrade",
                                       need_confirm=True).task_id
    # Another task of the same type runs to its end meanwhile: the held one was never claimed.
    other = plain_api.create_upgrade(targets=["dev_9"], task_type="softwareUpgrade").task_id
    assert wait_until_finished(plain_api, other).status == "Success"
    assert plain_api.show(task_id).batchtask.status == "Waitting"
    plain_api.confirm(task_id)
    task = wait_until_finished(plain_api, task_id)
    assert task.status == "Success"
    assert progress(task) == expected_progress(total=2, success=2)
    stop_worker(proc)


def test_retry_policy_and_user_retry(plain_api, worker):
    proc = worker()
    task_id = plain_api.create_upgrade(targets=["dev_bad"], task_policy={"retry_count": 1, "retry_interval": 0}).task_id
    task = wait_until_finished(plain_api, task_id)
    assert task.status == "Fail"
    d = details(plain_api, task_id)["dev_bad"]
    # Two runs: the first, then one automatic retry (retry_interval 0: due at once).
    assert d.error.error_code == "EXIT_3"
    plain_api.retry(task_id)
    assert wait_until_finished(plain_api, task_id).status == "Fail"
    stop_worker(proc)
