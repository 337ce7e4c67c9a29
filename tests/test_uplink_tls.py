"""TLS with a private CA, user name and password from the secrets, and MQTT 3.1.1."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from conftest import Broker, free_port
from paho.mqtt.enums import CallbackAPIVersion
from uplink_helpers import alert, make_config

from gateway.config import SecretsConfig
from gateway.model import Severity
from gateway.uplink import Uplink


async def until(pred, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def make_pki(d: Path) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=anxin test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    )


@pytest.fixture
def tls_broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    if shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("openssl and mosquitto_passwd are needed")
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    pw = pki / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "gw-user", "s3cret"], check=True)
    # As root, mosquitto drops to its own user, who cannot enter pytest's tmp_path.
    user = "user root\n" if os.geteuid() == 0 else ""
    conf = (
        f"{user}cafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\n"
        f"keyfile {pki / 'server.key'}\n"
        f"allow_anonymous false\npassword_file {pw}\n"
    )
    b = Broker(tmp_path, extra_conf=conf)
    b.start()
    try:
        yield b, pki
    finally:
        b.stop()


def tls_subscriber(port: int, ca: Path, received: list[bytes]) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="tls-platform", protocol=paho.MQTTv5)
    c.tls_set(ca_certs=str(ca))
    c.username_pw_set("gw-user", "s3cret")
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("anxin/v1/#", qos=1)
    c.on_message = lambda cl, u, m: received.append(m.payload)
    c.connect("localhost", port)
    c.loop_start()
    return c


async def test_tls_with_username_and_password(tls_broker, store):
    broker, pki = tls_broker
    received: list[bytes] = []
    sub = tls_subscriber(broker.port, pki / "ca.pem", received)
    try:
        time.sleep(0.3)
        cfg = make_config(
            None, broker_url=f"mqtts://localhost:{broker.port}", tls_ca=str(pki / "ca.pem")
        )
        cfg = replace(cfg, secrets=SecretsConfig(mqtt_username="gw-user", mqtt_password="s3cret"))
        row = store.commit_alert(alert(Severity.CRITICAL))
        uplink = Uplink(cfg, store)
        task = asyncio.create_task(uplink.run())
        try:
            assert await uplink.wait_delivered(row.seq, 20)
            await until(lambda: any(row.msg_id.encode() in p for p in received))
        finally:
            await uplink.close()
        assert task.done()
    finally:
        sub.disconnect()
        sub.loop_stop()


async def test_wrong_password_is_retried_not_raised(tls_broker, store):
    broker, pki = tls_broker
    cfg = make_config(
        None, broker_url=f"mqtts://localhost:{broker.port}", tls_ca=str(pki / "ca.pem")
    )
    cfg = replace(cfg, secrets=SecretsConfig(mqtt_username="gw-user", mqtt_password="wrong"))
    store.commit_alert(alert())
    uplink = Uplink(cfg, store)
    task = asyncio.create_task(uplink.run())
    try:
        await until(lambda: uplink.stats.connect_failures >= 3)
        assert not uplink.connected
        assert store.pending_count() == 1
    finally:
        await uplink.close()
    assert task.done()


async def test_untrusted_server_certificate_is_refused(tls_broker, store):
    broker, _ = tls_broker
    # The system CAs do not know the test CA: the handshake must fail, and be retried.
    cfg = make_config(None, broker_url=f"mqtts://localhost:{broker.port}")
    uplink = Uplink(cfg, store)
    task = asyncio.create_task(uplink.run())
    try:
        await until(lambda: uplink.stats.connect_failures >= 2)
        assert not uplink.connected
    finally:
        await uplink.close()
    assert task.done()


async def test_mqtt_311(mosquitto, store):
    row = store.commit_alert(alert(Severity.WARNING))
    uplink = Uplink(make_config(mosquitto, protocol="3.1.1"), store)
    task = asyncio.create_task(uplink.run())
    try:
        assert await uplink.wait_delivered(row.seq, 20)
        conn = uplink._conn
        assert conn is not None
        assert conn.protocol == "3.1.1"
    finally:
        await uplink.close()
    assert task.done()


async def test_auto_falls_back_to_311_on_a_broker_without_mqtt5(tmp_path, store):
    amqtt = Path(sys.executable).parent / "amqtt"
    if not amqtt.exists():
        pytest.skip("amqtt (an MQTT 3.1.1-only broker) is not installed")
    port = free_port()
    conf = tmp_path / "amqtt.yaml"
    conf.write_text(
        f"listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{port}\n"
        "auth:\n  allow-anonymous: true\n  plugins: ['auth_anonymous']\n"
        "topic-check:\n  enabled: false\n"
    )
    with open(tmp_path / "amqtt.log", "wb") as log:
        proc = subprocess.Popen([str(amqtt), "-c", str(conf)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "amqtt did not start"
                time.sleep(0.1)
        row = store.commit_alert(alert(Severity.CRITICAL))
        uplink = Uplink(make_config(None, broker_url=f"mqtt://127.0.0.1:{port}"), store)
        task = asyncio.create_task(uplink.run())
        try:
            assert await uplink.wait_delivered(row.seq, 20)
            conn = uplink._conn
            assert conn is not None
            assert conn.protocol == "3.1.1"
            assert uplink.stats.connect_failures >= 1  # the MQTT 5 attempt
        finally:
            await uplink.close()
        assert task.done()
    finally:
        proc.terminate()
        proc.wait(10)
