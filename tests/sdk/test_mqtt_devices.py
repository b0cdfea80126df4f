"""The device channel: devices speak MQTT 3.1.1 for real (paho-mqtt) to `taskd serve --mqtt-listen`, the platform
side is the official IoTDAClient. Spec: ../shared/spec/iotda-device-mqtt.md; docs/device-channel.md.

The server listens on 127.0.0.2 (Mosquitto holds 127.0.0.1:1883 on the test machines)."""

from __future__ import annotations

import gzip
import json
import secrets
import subprocess

import paho.mqtt.client as mqtt
import pytest
from huaweicloudsdkiotda.v5 import (
    AddDevice,
    AddDeviceRequest,
    AuthInfo,
    CreateBatchTask,
    CreateBatchTaskRequest,
    CreateCommandRequest,
    CreateMessageRequest,
    DeleteDeviceRequest,
    DeviceCommandRequest,
    DeviceMessageRequest,
    DevicePropertiesRequest,
    FreezeDeviceRequest,
    ListPropertiesRequest,
    ResetDeviceSecret,
    ResetDeviceSecretRequest,
    ShowBatchTaskRequest,
    ShowDeviceMessageRequest,
    ShowDeviceRequest,
    ShowDeviceShadowRequest,
    UpdateDesired,
    UpdateDesireds,
    UpdateDeviceShadowDesiredDataRequest,
    UpdatePropertiesRequest,
)

from mqtt_device import Device
from taskd_sdk import POSTGRES_URL, Api, TaskdServer, expect_error
from taskd_sdk import wait_for as wait_until

MQTT_HOST = "127.0.0.2"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.2 (the device SDKs skip host-name checks; paho checks it)."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=taskd-test", "-addext", f"subjectAltName=IP:{MQTT_HOST}", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def device_server(tmp_path_factory, tls_files):
    srv = TaskdServer(tmp_path_factory.mktemp("taskd-devices") / "data", name="taskd-devices", mqtt_host=MQTT_HOST,
                      tls=tls_files)
    srv.start()
    yield srv
    srv.stop()
    srv.drop_database()


@pytest.fixture
def dapi(device_server):
    return Api(device_server.url, device_server.create_credentials(), "plain")


def register(api, device_id=None, secret=None, secure_access=False) -> tuple[str, str]:
    device_id = device_id or f"prod_{secrets.token_hex(4)}"
    secret = secret or secrets.token_hex(8)
    api.client.add_device(AddDeviceRequest(body=AddDevice(
        device_id=device_id, node_id=device_id, product_id="prod",
        auth_info=AuthInfo(auth_type="SECRET", secret=secret, secure_access=secure_access))))
    return device_id, secret


def device(srv, device_id, secret, **kw) -> Device:
    return Device(MQTT_HOST, srv.mqtt_port, device_id, secret, **kw)


def show(api, device_id):
    return api.client.show_device(ShowDeviceRequest(device_id=device_id))


def online(api, device_id, status="ONLINE"):
    return wait_until(lambda: show(api, device_id).status == status, f"{device_id} {status}")


# ---- connecting -------------------------------------------------------------------------------------------------


def test_connack_codes_follow_iotda(device_server, dapi):
    device_id, secret = register(dapi)
    frozen_id, frozen_secret = register(dapi)
    dapi.client.freeze_device(FreezeDeviceRequest(device_id=frozen_id))
    secure_id, secure_secret = register(dapi, secure_access=True)
    srv = device_server
    assert device(srv, "prod_nobody", "whatever-secret").connect() == 4
    assert device(srv, device_id, "wrong-secret-1").connect() == 4
    assert device(srv, device_id, secret, client_id=f"{device_id}_0_0").connect() == 2
    assert device(srv, device_id, secret, client_id=f"other_0_0_2026113015").connect() == 2
    assert device(srv, device_id, secret, keepalive=10).connect() == 2
    assert device(srv, device_id, secret, keepalive=1201).connect() == 2
    assert device(srv, frozen_id, frozen_secret).connect() == 5
    assert device(srv, secure_id, secure_secret).connect() == 5
    # Uppercase hex is not the password.
    d = device(srv, device_id, secret)
    assert device(srv, device_id, secret, password_override=d.password.upper()).connect() == 4
    assert show(dapi, device_id).status == "INACTIVE"
    with device(srv, device_id, secret, sign_type="1") as ok:
        assert ok.connect() == 0
        online(dapi, device_id)
    # MQTT 3.1 (`MQIsdp`), as the Java SDK's fallback speaks it.
    with device(srv, device_id, secret, protocol=mqtt.MQTTv31) as old:
        assert old.connect() == 0
        resp = dapi.client.create_command(CreateCommandRequest(device_id=device_id, body=DeviceCommandRequest(
            paras={"v": 31})))
        assert resp.response["paras"]["echo"] == {"v": 31}


def test_status_times_and_versions(device_server, dapi):
    device_id, secret = register(dapi)
    assert show(dapi, device_id).status == "INACTIVE"
    d = device(device_server, device_id, secret)
    assert d.connect() == 0
    online(dapi, device_id)
    shown = show(dapi, device_id)
    assert shown.active_time and shown.connection_status_update_time
    first_active = shown.active_time
    d.publish(f"$oc/devices/{device_id}/sys/events/up", {"object_device_id": device_id, "services": [
        {"service_id": "$ota", "event_type": "version_report", "event_time": "2026-11-30T15:32:56Z",
         "event_id": "", "paras": {"fw_version": "v1.0", "sw_version": "v1.1"}},
        {"service_id": "$log", "event_type": "log_report", "paras": {"content": "hello"}},
    ]}).wait_for_publish(5)
    wait_until(lambda: show(dapi, device_id).fw_version == "v1.0", "fw_version")
    assert show(dapi, device_id).sw_version == "v1.1"
    d.close()
    online(dapi, device_id, "OFFLINE")
    with device(device_server, device_id, secret) as again:
        assert again.connect() == 0
        online(dapi, device_id)
        assert show(dapi, device_id).active_time == first_active


def test_a_second_connection_wins(device_server, dapi):
    device_id, secret = register(dapi)
    first = device(device_server, device_id, secret)
    assert first.connect() == 0
    with device(device_server, device_id, secret) as second:
        assert second.connect() == 0
        assert first.wait_disconnected(), "the older connection was not closed"
        first.client.loop_stop()
        online(dapi, device_id)
        # The new connection still gets commands.
        resp = dapi.client.create_command(CreateCommandRequest(device_id=device_id, body=DeviceCommandRequest(
            service_id="Switch", command_name="ON", paras={"v": 1})))
        assert resp.response["paras"]["echo"] == {"v": 1}


def test_freeze_and_delete_disconnect(device_server, dapi):
    device_id, secret = register(dapi)
    d = device(device_server, device_id, secret)
    assert d.connect() == 0
    online(dapi, device_id)
    dapi.client.freeze_device(FreezeDeviceRequest(device_id=device_id))
    assert d.wait_disconnected()
    d.client.loop_stop()
    other_id, other_secret = register(dapi)
    o = device(device_server, other_id, other_secret)
    assert o.connect() == 0
    dapi.client.delete_device(DeleteDeviceRequest(device_id=other_id))
    assert o.wait_disconnected()
    o.client.loop_stop()


def reset_secret(api, device_id, **body):
    return api.client.reset_device_secret(ResetDeviceSecretRequest(
        device_id=device_id, action_id="resetSecret", body=ResetDeviceSecret(**body)))


def test_reset_device_secret_primary_and_secondary(device_server, dapi):
    device_id, secret = register(dapi)
    srv = device_server
    # SECONDARY: the device may log in with either secret; its connection stays.
    first = device(srv, device_id, secret)
    assert first.connect() == 0
    resp = reset_secret(dapi, device_id, secret="second-secret-1", secret_type="SECONDARY")
    assert (resp.device_id, resp.secret, resp.secret_type) == (device_id, "second-secret-1", "SECONDARY")
    assert not first.wait_disconnected(1.0), "a reset without force_disconnect keeps the connection"
    first.close()
    online(dapi, device_id, "OFFLINE")
    with device(srv, device_id, "second-secret-1") as d:
        assert d.connect() == 0
        online(dapi, device_id)
    online(dapi, device_id, "OFFLINE")
    with device(srv, device_id, secret, sign_type="1") as d:
        assert d.connect() == 0
    assert device(srv, device_id, "third-secret-1").connect() == 4

    # PRIMARY with force_disconnect: the connected device is cut off; the old primary secret is refused, the new one
    # (and the secondary secret) let it in.
    connected = device(srv, device_id, secret)
    assert connected.connect() == 0
    online(dapi, device_id)
    resp = reset_secret(dapi, device_id, secret="new-primary-1", force_disconnect=True)
    assert (resp.secret, resp.secret_type) == ("new-primary-1", "PRIMARY")
    assert connected.wait_disconnected(), "force_disconnect did not close the connection"
    connected.client.loop_stop()
    online(dapi, device_id, "OFFLINE")
    assert device(srv, device_id, secret).connect() == 4
    with device(srv, device_id, "new-primary-1") as d:
        assert d.connect() == 0
        online(dapi, device_id)
    with device(srv, device_id, "second-secret-1") as d:
        assert d.connect() == 0

    # No secret given: the platform makes one, answered once.
    made = reset_secret(dapi, device_id, secret_type="SECONDARY").secret
    assert len(made) == 32
    assert device(srv, device_id, "second-secret-1").connect() == 4
    with device(srv, device_id, made) as d:
        assert d.connect() == 0


def test_reset_device_secret_refusals(device_server, dapi):
    device_id, _ = register(dapi)
    expect_error(lambda: reset_secret(dapi, "prod_nobody", secret="whatever-1"), 404, "IOTDA.014000")
    expect_error(lambda: reset_secret(dapi, device_id, secret="short"), 400, "IOTDA.000006")
    expect_error(lambda: reset_secret(dapi, device_id, secret_type="TERTIARY"), 400, "IOTDA.000006")
    expect_error(lambda: dapi.client.reset_device_secret(ResetDeviceSecretRequest(
        device_id=device_id, action_id="rotate", body=ResetDeviceSecret())), 400, "IOTDA.000006")
    cert_id = f"prod_{secrets.token_hex(4)}"
    dapi.client.add_device(AddDeviceRequest(body=AddDevice(
        device_id=cert_id, node_id=cert_id, product_id="prod",
        auth_info=AuthInfo(auth_type="CERTIFICATES", fingerprint="ab" * 20))))
    e = expect_error(lambda: reset_secret(dapi, cert_id, secret="whatever-1"), 400, "IOTDA.000006")
    assert "CERTIFICATES" in e.error_msg


def test_foreign_topics_are_refused(device_server, dapi):
    device_id, secret = register(dapi)
    other_id, _ = register(dapi)
    with device(device_server, device_id, secret) as d:
        assert d.connect() == 0
        assert d.subscribe(f"$oc/devices/{other_id}/sys/#") == [128]
        assert d.subscribe("#") == [128]
        assert d.subscribe(f"$oc/devices/{device_id}/user/mine", qos=1) == [1]
        # A publish to another device's topic is acknowledged and dropped; the connection stays.
        d.publish(f"$oc/devices/{other_id}/sys/properties/report",
                  {"services": [{"service_id": "S", "properties": {"x": 1}}]}).wait_for_publish(5)
        shadow = dapi.client.show_device_shadow(ShowDeviceShadowRequest(device_id=other_id))
        assert not (shadow.shadow or [])
        assert not d.disconnected


def test_secure_access_devices_connect_over_tls(device_server, dapi, tls_files):
    device_id, secret = register(dapi, secure_access=True)
    assert device(device_server, device_id, secret).connect() == 5
    d = Device(MQTT_HOST, device_server.mqtts_port, device_id, secret, ca_file=str(tls_files[0]))
    with d:
        assert d.connect() == 0
        online(dapi, device_id)
        resp = dapi.client.create_command(CreateCommandRequest(device_id=device_id, body=DeviceCommandRequest(
            paras={"over": "tls"})))
        assert resp.response["paras"]["echo"] == {"over": "tls"}


# ---- platform → device --------------------------------------------------------------------------------------


def test_commands_answered_offline_and_timed_out(device_server, dapi):
    device_id, secret = register(dapi)
    call = lambda: dapi.client.create_command(CreateCommandRequest(  # noqa: E731
        device_id=device_id, body=DeviceCommandRequest(service_id="Switch", command_name="ON", paras={"v": "on"})))
    expect_error(call, 409, "IOTDA.014016")
    expect_error(lambda: dapi.client.create_command(CreateCommandRequest(
        device_id="prod_missing", body=DeviceCommandRequest(paras={}))), 404, "IOTDA.014000")
    with device(device_server, device_id, secret) as d:
        assert d.connect() == 0
        resp = call()
        assert resp.command_id
        assert resp.response == {"result_code": 0, "response_name": "",
                                 "paras": {"echo": {"v": "on"}, "command_name": "ON"}}
        # The command went out on the documented topic with the command id as request id, without SUBSCRIBE.
        topic, payload = d.wait_message(lambda t, p: "/sys/commands/request_id=" in t)
        assert topic == f"$oc/devices/{device_id}/sys/commands/request_id={resp.command_id}"
        assert json.loads(payload)["paras"] == {"v": "on"}
    with device(device_server, device_id, secret, auto_answer=False) as silent:
        assert silent.connect() == 0
        online(dapi, device_id)
        expect_error(call, 408, "IOTDA.014111")


def test_properties_set_and_get(device_server, dapi):
    device_id, secret = register(dapi)
    with device(device_server, device_id, secret) as d:
        assert d.connect() == 0
        resp = dapi.client.update_properties(UpdatePropertiesRequest(device_id=device_id, body=DevicePropertiesRequest(
            services=[{"service_id": "Switch", "properties": {"state": 1}}])))
        assert resp.response == {"result_code": 0, "result_desc": "Success"}
        got = dapi.client.list_properties(ListPropertiesRequest(device_id=device_id, service_id="Switch"))
        assert got.response == {"services": [{"service_id": "Switch", "properties": {"state": 1}, "event_time": None}]}


def show_message(api, device_id, message_id):
    return api.client.show_device_message(ShowDeviceMessageRequest(device_id=device_id, message_id=message_id))


def test_messages_online_offline_and_formats(device_server, dapi):
    device_id, secret = register(dapi)
    # ttl 0: not cached. For a device that stays offline it ends TIMEOUT (taskd: 20 s, the reply timeout), marked by
    # the server's own maintenance; checked at the end, so the rest of this test runs meanwhile.
    away_id, _ = register(dapi)
    uncached = dapi.client.create_message(CreateMessageRequest(device_id=away_id, body=DeviceMessageRequest(
        message_id="m-uncached", message="now or never", ttl=0)))
    assert uncached.result.status == "PENDING"
    # Offline: kept PENDING, delivered within seconds of the device connecting.
    created = dapi.client.create_message(CreateMessageRequest(device_id=device_id, body=DeviceMessageRequest(
        message_id="m-offline", name="greet", message="hello")))
    assert created.result.status == "PENDING"
    assert show_message(dapi, device_id, "m-offline").status == "PENDING"
    with device(device_server, device_id, secret) as d:
        assert d.connect() == 0
        topic, payload = d.wait_message(lambda t, p: t.endswith("/sys/messages/down"))
        assert json.loads(payload) == {"object_device_id": device_id, "name": "greet", "id": "m-offline",
                                       "content": "hello"}
        wait_until(lambda: show_message(dapi, device_id, "m-offline").status == "DELIVERED", "DELIVERED")
        # raw: the message itself is the payload; a custom topic needs a subscription.
        dapi.client.create_message(CreateMessageRequest(device_id=device_id, body=DeviceMessageRequest(
            message_id="m-raw", message={"k": 1}, payload_format="raw")))
        d.wait_message(lambda t, p: t.endswith("/sys/messages/down") and json.loads(p) == {"k": 1})
        dapi.client.create_message(CreateMessageRequest(device_id=device_id, body=DeviceMessageRequest(
            message_id="m-unsub", message="x", topic="nobody")))
        failed = wait_until(lambda: (m := show_message(dapi, device_id, "m-unsub")).status == "FAILED" and m,
                            "FAILED")
        assert failed.error_info.error_code == "IOTDA.014112"
        assert d.subscribe(f"$oc/devices/{device_id}/user/alerts") == [1]
        dapi.client.create_message(CreateMessageRequest(device_id=device_id, body=DeviceMessageRequest(
            message_id="m-custom", message="aGVsbG8=", encoding="base64", topic="alerts")))
        _, raw = d.wait_message(lambda t, p: t == f"$oc/devices/{device_id}/user/alerts")
        assert raw == b"hello"
        wait_until(lambda: show_message(dapi, device_id, "m-custom").status == "DELIVERED", "DELIVERED")
    expect_error(lambda: dapi.client.create_message(CreateMessageRequest(device_id=device_id, body=DeviceMessageRequest(
        message_id="m-raw", message="again"))), 400, "IOTDA.014015")
    expect_error(lambda: dapi.client.create_message(CreateMessageRequest(device_id=device_id, body=DeviceMessageRequest(
        message="bad ttl", ttl=7))), 400, "IOTDA.000006")
    timed_out = wait_until(lambda: (m := show_message(dapi, away_id, "m-uncached")).status != "PENDING" and m,
                           "the uncached message ends", deadline_s=60)
    assert timed_out.status == "TIMEOUT"


def test_shadow_desired_is_pushed_and_reports_fill_reported(device_server, dapi):
    device_id, secret = register(dapi)
    with device(device_server, device_id, secret) as d:
        assert d.connect() == 0
        d.report_properties("Switch", {"state": 0, "level": 3})
        wait_until(lambda: (dapi.client.show_device_shadow(ShowDeviceShadowRequest(device_id=device_id)).shadow
                            or [None])[0], "reported shadow")
        shadow = dapi.client.show_device_shadow(ShowDeviceShadowRequest(device_id=device_id)).shadow
        assert shadow[0].service_id == "Switch" and shadow[0].reported.properties == {"state": 0, "level": 3}
        dapi.client.update_device_shadow_desired_data(UpdateDeviceShadowDesiredDataRequest(
            device_id=device_id, body=UpdateDesireds(shadow=[UpdateDesired(service_id="Switch",
                                                                           desired={"state": 1, "level": 3})])))
        # Only what differs from reported is pushed, as a property set.
        _, payload = d.wait_message(lambda t, p: "/sys/properties/set/request_id=" in t)
        assert json.loads(payload)["services"] == [{"service_id": "Switch", "properties": {"state": 1}}]
        # A device that asks for its shadow gets it.
        d.publish(f"$oc/devices/{device_id}/sys/shadow/get/request_id=s-1", {"service_id": "Switch"})
        _, answer = d.wait_message(lambda t, p: t.endswith("/sys/shadow/get/response/request_id=s-1"))
        answer = json.loads(answer)
        assert answer["object_device_id"] == device_id
        assert answer["shadow"][0]["desired"]["properties"] == {"state": 1, "level": 3}
        # gzip reports (the Java SDK) are read too.
        d.publish(f"$oc/devices/{device_id}/sys/properties/report?encoding=gzip", gzip.compress(json.dumps(
            {"services": [{"service_id": "Meter", "properties": {"kwh": 7}}]}).encode())).wait_for_publish(5)
        wait_until(lambda: any(s.service_id == "Meter" for s in dapi.client.show_device_shadow(
            ShowDeviceShadowRequest(device_id=device_id)).shadow), "gzip report")


# ---- batch tasks run by taskd over the channel ----------------------------------------------------------------


def task_of(api, task_id):
    return api.client.show_batch_task(ShowBatchTaskRequest(task_id=task_id, limit=50))


def test_batch_commands_messages_and_shadows_run_on_real_connections(device_server, dapi):
    ok_id, ok_secret = register(dapi)
    bad_id, bad_secret = register(dapi)
    offline_id, _ = register(dapi)
    with device(device_server, ok_id, ok_secret) as ok, \
            device(device_server, bad_id, bad_secret, command_result_code=1) as bad:
        assert ok.connect() == 0 and bad.connect() == 0
        online(dapi, ok_id)
        online(dapi, bad_id)
        created = dapi.client.create_batch_task(CreateBatchTaskRequest(body=CreateBatchTask(
            task_name="reboot_all", task_type="createCommands",
            targets=[ok_id, bad_id, offline_id, "prod_not_registered"],
            document={"service_id": "Switch", "command_name": "REBOOT", "paras": {"delay": 0}})))
        task = wait_until(lambda: (t := task_of(dapi, created.task_id)).batchtask.status in ("Success", "Fail",
                                                                                              "PartialSuccess") and t,
                          "createCommands finished")
        details = {d.target: d for d in task.task_details}
        assert details[ok_id].status == "Success"
        assert json.loads(details[ok_id].output)["paras"]["command_name"] == "REBOOT"
        assert details[bad_id].status == "Fail" and details[bad_id].error.error_code == "IOTDA.014901"
        assert json.loads(details[bad_id].output)["result_code"] == 1, "the refusing answer is the output (Q13)"
        assert details[offline_id].error.error_code == "IOTDA.014016"
        assert details["prod_not_registered"].error.error_code == "IOTDA.014000"

        created = dapi.client.create_batch_task(CreateBatchTaskRequest(body=CreateBatchTask(
            task_name="hello_all", task_type="createMessages", targets=[ok_id],
            document={"message": "batch hello", "name": "b"})))
        wait_until(lambda: task_of(dapi, created.task_id).batchtask.status == "Success", "createMessages Success")
        ok.wait_message(lambda t, p: t.endswith("/sys/messages/down") and b"batch hello" in p)

        created = dapi.client.create_batch_task(CreateBatchTaskRequest(body=CreateBatchTask(
            task_name="shadow_all", task_type="updateDeviceShadows", targets=[ok_id],
            document={"shadow": [{"service_id": "Switch", "desired": {"state": 9}}]})))
        wait_until(lambda: task_of(dapi, created.task_id).batchtask.status == "Success", "updateDeviceShadows")
        _, payload = ok.wait_message(lambda t, p: "/sys/properties/set/" in t)
        assert json.loads(payload)["services"] == [{"service_id": "Switch", "properties": {"state": 9}}]


def test_batch_messages_wait_for_offline_devices(device_server, dapi):
    """spec §3: a createMessages sub-task for an offline device is cached (PENDING), not failed; it succeeds once the
    device connects and takes the message."""
    device_id, secret = register(dapi)
    created = dapi.client.create_batch_task(CreateBatchTaskRequest(body=CreateBatchTask(
        task_name="hello_later", task_type="createMessages", targets=[device_id],
        document={"message": "see you", "message_id": "later"})))
    waiting = wait_until(lambda: (t := task_of(dapi, created.task_id)).task_details[0].status == "FailWaitRetry" and t,
                         "the sub-task waits for its device")
    assert waiting.batchtask.status == "Processing"
    assert waiting.task_details[0].error.error_code == "IOTDA.014016"
    with device(device_server, device_id, secret) as d:
        assert d.connect() == 0
        d.wait_message(lambda t, p: t.endswith("/sys/messages/down") and b"see you" in p)
        done = wait_until(lambda: (t := task_of(dapi, created.task_id)).batchtask.status in ("Success", "Fail") and t,
                          "createMessages finished")
        assert done.batchtask.status == "Success", done.task_details


@pytest.mark.skipif(POSTGRES_URL is not None, reason="on PostgreSQL each process is its own node: a dead node's "
                                                     "sessions end with cluster routing (docs/device-channel.md)")
def test_a_crashed_embedded_server_leaves_no_device_online(tmp_path):
    srv = TaskdServer(tmp_path / "data", name="taskd-devices-crash", mqtt_host=MQTT_HOST)
    srv.start()
    try:
        api = Api(srv.url, srv.bootstrap, "plain")
        device_id, secret = register(api)
        d = device(srv, device_id, secret)
        assert d.connect() == 0
        online(api, device_id)
        srv.kill()  # SIGKILL: no chance to record OFFLINE
        d.client.loop_stop()
        srv.mqtt_host = None  # and the next start has no device listener at all
        srv.start()
        api = Api(srv.url, srv.bootstrap, "plain")
        shown = show(api, device_id)
        assert shown.status == "OFFLINE"
        assert shown.active_time
    finally:
        srv.stop()
