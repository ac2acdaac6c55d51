"""Broker TLS: CareHub's CA and certificates load, and a real Mosquitto serves TLS with them."""

from __future__ import annotations

import ssl
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hub import pki
from hub.broker import MosquittoProcess, find_mosquitto, free_port
from hub.broker_auth import Login, mosquitto_hash, render_acl, render_password_file
from tests.factories import T0

NOW = T0


@pytest.fixture
def pki_dir(tmp_path: Path) -> Path:
    out = tmp_path / "pki"
    ca = pki.create_ca(now=NOW)
    pki.write_issued(ca, out, "ca")
    broker = pki.create_broker_cert(ca, now=NOW, hostnames=["broker.carehub.test"])
    pki.write_issued(broker, out, "broker")
    pki.write_issued(pki.create_client_cert(pki.load_ca(out), "btn-1", now=NOW), out, "client")
    return out


def test_the_certificates_load_chain_to_the_ca_and_name_the_broker(pki_dir: Path) -> None:
    ca = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    broker = x509.load_pem_x509_certificate((pki_dir / "broker.crt").read_bytes())
    broker.verify_directly_issued_by(ca)
    san = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.carehub.test"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (pki_dir / "broker.key").stat().st_mode & 0o777 == 0o600
    context = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    context.load_cert_chain(pki_dir / "client.crt", pki_dir / "client.key")


def _connect(port: int, ca: Path | None, cert: tuple[Path, Path] | None = None) -> str:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"tls-{uuid.uuid4().hex[:6]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if cert is not None:
        context.load_cert_chain(*cert)
    client.tls_set_context(context)
    client.username_pw_set("hub", "hub-secret")
    answered = threading.Event()
    reason: list[str] = []

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, code: Any, _p: Any) -> None:
        reason.append(str(code))
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect("127.0.0.1", port)
    except (ssl.SSLError, OSError) as exc:
        return f"TLS refused: {type(exc).__name__}"
    client.loop_start()
    try:
        if not answered.wait(10):
            return "no CONNACK"
        return reason[0]
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.broker
@pytest.mark.parametrize("require_certificate", [False, True])
def test_mosquitto_serves_tls_with_the_generated_certificates(
    tmp_path: Path, pki_dir: Path, require_certificate: bool
) -> None:
    if find_mosquitto() is None:
        pytest.fail("Mosquitto is not installed: run `make services`", pytrace=False)
    passwords, acl = tmp_path / "passwd", tmp_path / "acl"
    passwords.write_text(render_password_file([Login("hub", mosquitto_hash("hub-secret"))]))
    acl.write_text(render_acl([], "hub"))
    tls_port = free_port()
    listener = pki.render_tls_listener(
        tls_port,
        bind="127.0.0.1",
        cafile=pki_dir / "ca.crt",
        certfile=pki_dir / "broker.crt",
        keyfile=pki_dir / "broker.key",
        require_certificate=require_certificate,
    )
    broker = MosquittoProcess(
        tmp_path / "mosquitto", password_file=passwords, acl_file=acl, extra_config=listener
    )
    with broker:
        client_cert = (pki_dir / "client.crt", pki_dir / "client.key")
        assert _connect(tls_port, pki_dir / "ca.crt", client_cert) == "Success"
        # a client that does not trust CareHub's CA refuses the broker
        assert _connect(tls_port, None).startswith("TLS refused")
        if require_certificate:
            assert _connect(tls_port, pki_dir / "ca.crt") != "Success"
        else:
            assert _connect(tls_port, pki_dir / "ca.crt") == "Success"
