"""Several `taskd serve` nodes on one PostgreSQL database: any node serves any request, a node killed with SIGKILL
midway loses nothing, maintenance fails over to a new leader, and a database restart mid-task is survived.

Runs in the PostgreSQL pass of scripts/test (TASKD_SDK_POSTGRES_URL); the embedded store is one process by design.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from huaweicloudsdkiotda.v5 import (
    CreateBatchTask,
    CreateBatchTaskRequest,
    CreateCommandRequest,
    CreateMessageRequest,
    DeviceCommandRequest,
    DeviceMessageRequest,
    DevicePropertiesRequest,
    FreezeDeviceRequest,
    ListDevicesRequest,
    ListPropertiesRequest,
    ShowBatchTaskRequest,
    ShowDeviceMessageRequest,
    UpdateDesired,
    UpdateDesireds,
    UpdateDeviceShadowDesiredDataRequest,
    UpdatePropertiesRequest,
)

from mqtt_device import Device
from taskd_sdk import (POSTGRES_URL, TASKD_BIN, Api, Creds, TaskdServer, expect_error, new_ak, new_project_id, new_sk,
                       progress, wait_for, write_xlsx)
from test_mqtt_devices import online, register

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="a cluster shares a PostgreSQL database "
                                                          "(the PostgreSQL pass of scripts/test runs it)")

FINAL = ("Success", "Fail", "PartialSuccess", "Stopped")


def start_cluster(tmp_path: Path, n: int, database_url: str | None = None) -> list[TaskdServer]:
    bootstrap = Creds(new_project_id(), new_ak(), new_sk())
    first = TaskdServer(tmp_path / "node0", name="node0", bootstrap=bootstrap, database_url=database_url)
    nodes = [first] + [TaskdServer(tmp_path / f"node{i}", name=f"node{i}", bootstrap=bootstrap,
                                   database_url=first.database_url) for i in range(1, n)]
    for node in nodes:
        node.start()
    return nodes


@pytest.fixture
def cluster(tmp_path):
    nodes = start_cluster(tmp_path, 3)
    yield nodes
    for node in nodes:
        node.kill()
    nodes[0].drop_database()


def api_on(node: TaskdServer) -> Api:
    return Api(node.url, node.bootstrap)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def log_of(node: TaskdServer) -> str:
    return ANSI.sub("", node.log_text(limit=10**8))


def leaders(nodes) -> list[TaskdServer]:
    """Nodes whose last leadership line says they lead (the log is the operator's view of it)."""
    led = []
    for node in nodes:
        lines = re.findall(r"this node (leads|no longer leads) maintenance", log_of(node))
        if lines and lines[-1] == "leads":
            led.append(node)
    return led


def device_count(api: Api) -> int:
    return api.client.list_devices(ListDevicesRequest(limit=1)).page.count


def test_any_node_serves_any_request(cluster):
    created = api_on(cluster[0]).create_upgrade(targets=["dev_1", "dev_2"])
    for node in cluster:
        shown = api_on(node).show(created.task_id)
        assert shown.batchtask.task_id == created.task_id
        assert progress(shown.batchtask)["total"] == 2
    api_on(cluster[2]).stop(created.task_id)
    assert api_on(cluster[1]).show(created.task_id).batchtask.status == "Stopped"


def test_a_node_killed_midway_loses_nothing(cluster, big_sheets):
    """30,000 createDevices sub-tasks run by the registry executors of three nodes; one node is SIGKILLed while it
    holds leases. The others finish its work after the leases expire; every device is created exactly once (a
    second creation would fail its sub-task: the device would exist), and the counters equal the sub-tasks."""
    api = api_on(cluster[0])
    file_id = api.upload(big_sheets[30000]).file_id
    task_id = api_on(cluster[1]).create({"task_name": "fleet", "task_type": "createDevices",
                                         "document_source": file_id}).task_id

    def started():
        p = progress(api.show(task_id).batchtask)
        return p if p["success"] > 0 else None

    at_kill = wait_for(started, "the first devices created", deadline_s=120)
    cluster[2].kill()
    assert at_kill["success"] < 30000, f"the task finished before the node was killed: {at_kill}"

    def finished():
        task = api.show(task_id).batchtask
        return task if task.status in FINAL else None

    task = wait_for(finished, "the task to finish on the surviving nodes", deadline_s=300)
    assert task.status == "Success", progress(task)
    p = progress(task)
    assert p["total"] == p["success"] == 30000, p
    assert sum(v for k, v in p.items() if k != "total") == 30000, p
    assert device_count(api) == 30000
    # The survivors agree.
    assert progress(api_on(cluster[1]).show(task_id).batchtask) == p


def test_maintenance_fails_over_to_a_new_leader(cluster, tmp_path):
    """One leader at a time; after the leader is SIGKILLed another node takes over within seconds, and its
    maintenance returns the sub-task of a dead worker (an expired lease) so a new worker finishes it."""
    led = wait_for(lambda: (lambda l: l if len(l) == 1 else None)(leaders(cluster)), "one maintenance leader",
                   deadline_s=30)
    leader = led[0]
    survivors = [n for n in cluster if n is not leader]
    api = api_on(survivors[0])
    task_id = api.create_simple(task_type="createCommands", targets=["dev_1"],
                                document={"service_id": "s", "command_name": "c", "paras": {}}).task_id
    creds = leader.bootstrap

    def worker(node, command):
        return subprocess.Popen([str(TASKD_BIN), "worker", "--endpoint", node.url, "--ak", creds.ak, "--sk", creds.sk,
                                 "--project-id", creds.project_id, "--task-type", "createCommands",
                                 "--lease-seconds", "5", "--", *command],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    doomed = worker(survivors[1], ["sleep", "600"])
    try:
        wait_for(lambda: api.status_of(task_id)["dev_1"] == "Processing", "the worker to take the sub-task")
    finally:
        doomed.kill()  # SIGKILL: no result, no more heartbeats; its lease runs out in 5 s
        doomed.wait(timeout=10)
    leader.kill()
    killed_at = time.monotonic()

    new = wait_for(lambda: (lambda l: l if l else None)(leaders(survivors)), "a new maintenance leader",
                   deadline_s=30)
    took = time.monotonic() - killed_at
    assert len(new) == 1, [n.name for n in new]
    assert took < 15, f"the new leader took over after {took:.1f} s"

    rescuer = worker(survivors[0], ["true"])
    try:
        wait_for(lambda: api.status_of(task_id)["dev_1"] == "Success", "the rescued sub-task to succeed",
                 deadline_s=60)
    finally:
        rescuer.kill()
        rescuer.wait(timeout=10)
    assert "leases_expired=1" in log_of(new[0])


# ---- a PostgreSQL restart -----------------------------------------------------------------------------------------


def test_a_postgres_restart_mid_task_is_survived(tmp_path, private_postgres):
    """The database goes away while 6,000 registry sub-tasks run: the node answers with clear 5xx errors (never a
    hang), recovers by itself when the database is back, and the task completes with every device created once."""
    nodes = start_cluster(tmp_path, 2, database_url=private_postgres.url)
    try:
        api = api_on(nodes[0])
        sheet = write_xlsx(tmp_path / "fleet.xlsx", ["node_id", "product_id"], [[f"n{i}", "p"] for i in range(6000)])
        file_id = api.upload(sheet).file_id
        task_id = api.create({"task_name": "fleet", "task_type": "createDevices", "document_source": file_id}).task_id
        wait_for(lambda: progress(api.show(task_id).batchtask)["success"] > 0, "the first devices", deadline_s=120)

        private_postgres.stop()
        # While it is down: a clear 5xx in the IoTDA envelope, within the store's acquire timeout.
        began = time.monotonic()
        with pytest.raises(Exception) as down:
            api.show(task_id)
        assert time.monotonic() - began < 15
        assert getattr(down.value, "status_code", None) in (500, 503), down.value
        private_postgres.start()

        def finished():
            try:
                task = api.show(task_id).batchtask
            except Exception:  # the pool reconnects on the next calls
                return None
            return task if task.status in FINAL else None

        task = wait_for(finished, "the task to finish after the restart", deadline_s=300)
        p = progress(task)
        assert (task.status, p["success"]) == ("Success", 6000), p
        assert device_count(api) == 6000
    finally:
        for node in nodes:
            node.kill()


# ---- devices: connected to one node, reached through any ------------------------------------------------------


@pytest.fixture
def device_cluster(tmp_path):
    """Three nodes, each with a device listener on its own loopback address (as behind a TCP load balancer), and a
    short node timeout so that a killed node's devices go OFFLINE within seconds."""
    bootstrap = Creds(new_project_id(), new_ak(), new_sk())
    nodes: list[TaskdServer] = []
    for i in range(3):
        nodes.append(TaskdServer(tmp_path / f"dnode{i}", name=f"dnode{i}", bootstrap=bootstrap,
                                 database_url=nodes[0].database_url if nodes else None,
                                 mqtt_host=f"127.0.0.{i + 2}", extra_args=("--node-timeout-secs", "5")))
    for node in nodes:
        node.start()
    yield nodes
    for node in nodes:
        node.kill()
    nodes[0].drop_database()


def on_node(node: TaskdServer, device_id: str, secret: str, **kw) -> Device:
    return Device(node.mqtt_host, node.mqtt_port, device_id, secret, **kw)


def command(api: Api, device_id: str, paras: dict):
    return api.client.create_command(CreateCommandRequest(device_id=device_id, body=DeviceCommandRequest(
        service_id="Switch", command_name="ON", paras=paras)))


def message_status(api: Api, device_id: str, message_id: str) -> str:
    return api.client.show_device_message(ShowDeviceMessageRequest(device_id=device_id, message_id=message_id)).status


def test_devices_are_reached_through_any_node_and_outlive_their_node(device_cluster):
    apis = [api_on(n) for n in device_cluster]
    device_id, secret = register(apis[0])
    first = on_node(device_cluster[1], device_id, secret)
    try:
        assert first.connect() == 0
        online(apis[2], device_id)
        # Commands, property requests and messages issued on the other nodes reach the device on node 1.
        assert command(apis[2], device_id, {"via": 2}).response["paras"]["echo"] == {"via": 2}
        assert command(apis[0], device_id, {"via": 0}).response["paras"]["echo"] == {"via": 0}
        assert apis[0].client.update_properties(UpdatePropertiesRequest(device_id=device_id, body=DevicePropertiesRequest(
            services=[{"service_id": "Switch", "properties": {"state": 1}}]))).response["result_code"] == 0
        got = apis[2].client.list_properties(ListPropertiesRequest(device_id=device_id, service_id="Switch"))
        assert got.response["services"][0]["properties"] == {"state": 1}
        apis[2].client.create_message(CreateMessageRequest(device_id=device_id, body=DeviceMessageRequest(
            message_id="m-routed", message="hello")))
        first.wait_message(lambda t, p: t.endswith("/sys/messages/down") and b"m-routed" in p)
        wait_for(lambda: message_status(apis[0], device_id, "m-routed") == "DELIVERED", "routed message DELIVERED")
        apis[2].client.update_device_shadow_desired_data(UpdateDeviceShadowDesiredDataRequest(
            device_id=device_id, body=UpdateDesireds(shadow=[UpdateDesired(service_id="Switch",
                                                                           desired={"state": 7})])))
        first.wait_message(lambda t, p: "/sys/properties/set/" in t and json.loads(p)["services"] == [
            {"service_id": "Switch", "properties": {"state": 7}}])
        # A batch task, claimed by whichever node: its sub-task reaches the device where it is.
        created = apis[0].client.create_batch_task(CreateBatchTaskRequest(body=CreateBatchTask(
            task_name="routed", task_type="createCommands", targets=[device_id],
            document={"service_id": "Switch", "command_name": "REBOOT", "paras": {"n": 1}})))
        task = wait_for(lambda: (t := apis[1].client.show_batch_task(ShowBatchTaskRequest(
            task_id=created.task_id))).batchtask.status in FINAL and t, "routed createCommands finished")
        assert task.batchtask.status == "Success", task.task_details
        assert json.loads(task.task_details[0].output)["paras"]["command_name"] == "REBOOT"

        # A second connection on node 0 wins: node 1 closes the older one.
        second = on_node(device_cluster[0], device_id, secret)
        assert second.connect() == 0
        assert first.wait_disconnected(), "the older connection on another node was not closed"
        first.client.loop_stop()
        assert command(apis[1], device_id, {"to": "second"}).response["paras"]["echo"] == {"to": "second"}

        # Node 0 dies with the device's connection: the others take it for dead and the device goes OFFLINE.
        device_cluster[0].kill()
        second.client.loop_stop()
        online(apis[1], device_id, "OFFLINE")
        expect_error(lambda: command(apis[1], device_id, {}), 409, "IOTDA.014016")
        apis[1].client.create_message(CreateMessageRequest(device_id=device_id, body=DeviceMessageRequest(
            message_id="m-waits", message="later")))
        assert message_status(apis[2], device_id, "m-waits") == "PENDING"
        # It reconnects elsewhere (the load balancer's next node): what waited is delivered, commands reach it.
        with on_node(device_cluster[2], device_id, secret) as third:
            assert third.connect() == 0
            third.wait_message(lambda t, p: t.endswith("/sys/messages/down") and b"m-waits" in p)
            wait_for(lambda: message_status(apis[1], device_id, "m-waits") == "DELIVERED", "waiting message DELIVERED")
            assert command(apis[1], device_id, {"after": "failover"}).response["paras"]["echo"] == {"after": "failover"}
            # Freezing it on node 1 closes its connection on node 2.
            apis[1].client.freeze_device(FreezeDeviceRequest(device_id=device_id))
            assert third.wait_disconnected(), "freezing did not close the connection on another node"
            third.client.loop_stop()
    finally:
        first.client.loop_stop()
