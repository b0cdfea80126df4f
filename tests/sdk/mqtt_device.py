"""A device speaking IoTDA's device protocol over real MQTT 3.1.1 (paho-mqtt), as the spec documents it
(`../shared/spec/iotda-device-mqtt.md`): client id `{device_id}_0_{sign_type}_{YYYYMMDDHH}`, password = lowercase hex
HMAC-SHA256(key = the timestamp, message = the secret), no SUBSCRIBE (like the official Python SDK) unless a test asks.

Waiting is event-driven: every received publish, CONNACK and disconnect is recorded under a condition variable that
the waits block on, so a test waits exactly as long as the server takes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import datetime, timezone

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

# paho 2.x reports MQTT 3.1.1 CONNACK codes as MQTT 5 reason codes.
CONNACK_REASON = {0: 0, 1: 132, 2: 133, 3: 136, 4: 134, 5: 135}


def password(timestamp: str, secret: str) -> str:
    return hmac.new(timestamp.encode(), secret.encode(), hashlib.sha256).hexdigest()


def utc_hour() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d%H")


class Device:
    def __init__(self, host: str, port: int, device_id: str, secret: str, *, sign_type: str = "0",
                 keepalive: int = 120, client_id: str | None = None, password_override: str | None = None,
                 auto_answer: bool = True, command_result_code: int = 0, ca_file: str | None = None,
                 protocol=mqtt.MQTTv311):
        self.host, self.port = host, port
        self.device_id = device_id
        ts = utc_hour()
        self.client_id = client_id or f"{device_id}_0_{sign_type}_{ts}"
        self.password = password_override if password_override is not None else password(ts, secret)
        self.keepalive = keepalive
        self.auto_answer = auto_answer
        self.command_result_code = command_result_code
        self.properties: dict[str, dict] = {}
        self.cond = threading.Condition()
        self.received: list[tuple[str, bytes]] = []
        self.connack: int | None = None
        self.disconnected = False
        self.suback: list[int] | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=protocol, clean_session=True)
        self.client.username_pw_set(device_id, self.password)
        if ca_file:
            # TLS 1.2 with the server's CA, as the official SDKs connect to 8883.
            import ssl
            ctx = ssl.create_default_context(cafile=ca_file)
            ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            self.client.tls_set_context(ctx)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # ---- paho callbacks (network thread) ------------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.connack = reason_code.value
            self.cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.disconnected = True
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.cond:
            self.suback = [rc.value for rc in reason_codes]
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.received.append((msg.topic, msg.payload))
            self.cond.notify_all()
        if self.auto_answer:
            self._answer(msg.topic, msg.payload)

    def _answer(self, topic: str, payload: bytes):
        prefix = f"$oc/devices/{self.device_id}/sys/"
        if not topic.startswith(prefix):
            return
        rest = topic[len(prefix):]
        request_id = rest.rsplit("request_id=", 1)[-1]
        body = json.loads(payload or b"{}")
        if rest.startswith("commands/request_id="):
            answer = {"result_code": self.command_result_code, "response_name": "",
                      "paras": {"echo": body.get("paras"), "command_name": body.get("command_name")}}
            self.publish(f"{prefix}commands/response/request_id={request_id}", answer)
        elif rest.startswith("properties/set/request_id="):
            for s in body.get("services") or []:
                self.properties.setdefault(s["service_id"], {}).update(s.get("properties") or {})
            self.publish(f"{prefix}properties/set/response/request_id={request_id}",
                         {"result_code": 0, "result_desc": "Success"})
        elif rest.startswith("properties/get/request_id="):
            services = [{"service_id": sid, "properties": props, "event_time": None}
                        for sid, props in self.properties.items()
                        if body.get("service_id") in (None, sid)]
            self.publish(f"{prefix}properties/get/response/request_id={request_id}", {"services": services})

    # ---- what a test does ---------------------------------------------------------------------------------------

    def connect(self, deadline_s: float = 10.0) -> int:
        """Connects and waits for the CONNACK; returns its MQTT 3.1.1 code (0 accepted)."""
        self.client.connect(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        with self.cond:
            ok = self.cond.wait_for(lambda: self.connack is not None or self.disconnected, deadline_s)
        assert ok, "no CONNACK"
        if self.connack is None:
            return -1
        reverse = {v: k for k, v in CONNACK_REASON.items()}
        code = reverse.get(self.connack, self.connack)
        if code != 0:
            self.client.disconnect()
            self.client.loop_stop()
        return code

    def publish(self, topic: str, payload, qos: int = 1):
        data = payload if isinstance(payload, (bytes, bytearray)) else json.dumps(payload).encode()
        return self.client.publish(topic, data, qos=qos)

    def report_properties(self, service_id: str, properties: dict):
        self.properties.setdefault(service_id, {}).update(properties)
        info = self.publish(f"$oc/devices/{self.device_id}/sys/properties/report",
                            {"services": [{"service_id": service_id, "properties": properties, "event_time": None}]})
        info.wait_for_publish(5)

    def subscribe(self, topic_filter: str, qos: int = 1) -> list[int]:
        with self.cond:
            self.suback = None
        self.client.subscribe(topic_filter, qos)
        with self.cond:
            assert self.cond.wait_for(lambda: self.suback is not None, 10), "no SUBACK"
            return self.suback

    def wait_message(self, match, deadline_s: float = 10.0) -> tuple[str, bytes]:
        """The first received publish (topic, payload) for which match(topic, payload) holds."""
        def found():
            return next(((t, p) for t, p in self.received if match(t, p)), None)
        with self.cond:
            assert self.cond.wait_for(lambda: found() is not None, deadline_s), (
                f"no matching message; received {[t for t, _ in self.received]}")
            return found()

    def wait_disconnected(self, deadline_s: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.disconnected, deadline_s)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()

    def abandon(self):
        """Stops answering and pinging without DISCONNECT, as a device losing power."""
        self.client.loop_stop()
        self.client.socket().close() if self.client.socket() else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass
