"""Fixtures of the SDK conformance suite.

Run:  scripts/sdk-venv && .venv-sdk/bin/python -m pytest tests/sdk -q
Env:  TASKD_BIN (default <repo>/target/debug/taskd)

One `taskd serve` per session (the restart test starts its own). Tests that need isolation get a fresh project
with its own AK/SK made with `taskd credentials create`. On a failure the server log written during that test is
attached to the report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from taskd_sdk import (FIGURES, LIVE_SERVERS, PG_BIN, TASKD_BIN, Api, PrivatePostgres, TaskdServer, device_rows,
                       write_xlsx)


def pytest_collection_modifyitems(session, config, items):
    if not items or config.option.collectonly:
        return
    if not (TASKD_BIN.is_file() and os.access(TASKD_BIN, os.X_OK)):
        pytest.exit(
            f"FAILED: the taskd server binary {TASKD_BIN} does not exist or is not executable. "
            f"Build it first (cargo build -p taskd) or point TASKD_BIN at it. "
            f"The SDK conformance suite cannot run without it.",
            returncode=1,
        )


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("figures measured")
        for line in FIGURES:
            terminalreporter.write_line(line)


# ---- attach the server log of the failing test ----------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item._taskd_log_offsets = {id(s): s.log_size() for s in LIVE_SERVERS}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    offsets = getattr(item, "_taskd_log_offsets", {})
    for srv in LIVE_SERVERS:
        state = "not started"
        if srv.proc is not None:
            rc = srv.proc.poll()
            state = "running" if rc is None else f"exited with {rc}"
        text = srv.log_text(offsets.get(id(srv), 0))
        rep.sections.append((f"taskd log ({srv.name}, {state}, {srv.log_path})", text or "(nothing logged)"))


# ---- server and clients -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    srv = TaskdServer(tmp_path_factory.mktemp("taskd-main") / "data", name="taskd-main")
    try:
        srv.start()
    except RuntimeError as e:  # nothing can pass without it: stop here with one clear message
        pytest.exit(f"FAILED: could not start the taskd server ({TASKD_BIN}): {e}", returncode=1)
    yield srv
    srv.stop()
    srv.drop_database()


@pytest.fixture(scope="module", params=["plain", "derived"])
def auth_mode(request):
    """plain = SDK-HMAC-SHA256; derived = V11-HMAC-SHA256 (BasicCredentials.with_derived_predicate)."""
    return request.param


@pytest.fixture
def creds(server):
    """A fresh project with its own key (nothing else lives in it)."""
    return server.create_credentials()


@pytest.fixture
def api(server, creds, auth_mode):
    """SDK client on a fresh project, in the module's auth mode."""
    return Api(server.url, creds, auth_mode)


@pytest.fixture
def plain_api(server, creds):
    """SDK client (plain signing only) on a fresh project, for slow tests where the signing mode is irrelevant."""
    return Api(server.url, creds, "plain")


@pytest.fixture
def new_api(server, auth_mode):
    """Factory: another fresh project (or a given Creds) with its own SDK client."""

    def make(creds=None, mode=None):
        return Api(server.url, creds or server.create_credentials(), mode or auth_mode)

    return make


@pytest.fixture(scope="module")
def shared_api(server, auth_mode):
    """One project per module and auth mode, for requests that must be rejected (they create nothing)."""
    return Api(server.url, server.create_credentials(), auth_mode)


@pytest.fixture(scope="session")
def big_sheets(tmp_path_factory):
    """xlsx files with exactly 30000 and 30001 data rows (built once per session)."""
    d = tmp_path_factory.mktemp("big-sheets")
    header = ["node_id", "product_id"]
    rows = [[f"node_{i}", "prod_1"] for i in range(30001)]
    return {
        30000: write_xlsx(d / "rows30000.xlsx", header, rows[:30000]),
        30001: write_xlsx(d / "rows30001.xlsx", header, rows),
    }


@pytest.fixture
def device_xlsx(tmp_path):
    return write_xlsx(tmp_path / "devices.xlsx", ["node_id", "product_id", "device_id", "device_name", "description",
                                                  "app_id", "secret", "gateway_id"], list(device_rows(3)))


@pytest.fixture
def private_postgres():
    """A PostgreSQL 15 cluster of the test's own, free to stop and start (the suite's shared server is not)."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL 15 server binaries ({PG_BIN}/initdb) to run a private cluster")
    # Not under pytest's tmp_path: as root that is private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="taskd-pg-"))
    pg = PrivatePostgres(root)
    yield pg
    try:
        pg.stop()
    except subprocess.CalledProcessError:
        pass
    shutil.rmtree(root, ignore_errors=True)
