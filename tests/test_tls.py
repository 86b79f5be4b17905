"""TLS: wss:// with a test CA and with tls=True; untrusted and plain-text clients fail fast."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import pytest
import trustme

import livenb
from livenb import AsyncClient, AsyncHub


@pytest.fixture
def ca(tmp_path: Path) -> tuple[trustme.CA, Path, Path, Path]:
    authority = trustme.CA()
    cert = authority.issue_cert("localhost", "127.0.0.1")
    cert_path = tmp_path / "hub.pem"
    key_path = tmp_path / "hub.key"
    ca_path = tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    authority.cert_pem.write_to_path(str(ca_path))
    return authority, cert_path, key_path, ca_path


async def test_wss_with_a_real_ca(ca: tuple[trustme.CA, Path, Path, Path], unit: float) -> None:
    _, cert, key, ca_path = ca
    async with AsyncHub(port=0, certfile=cert, keyfile=key) as hub:
        assert hub.url.startswith("wss://127.0.0.1:")
        async with AsyncClient(hub.url, hub.token, cafile=ca_path) as c:
            sub = c.subscribe("t")
            await sub.wait_ready()
            assert await c.publish("t", {"secret": 1}, ack=True) == 1
            assert await sub.wait(1) == 1


async def test_a_client_without_the_ca_is_rejected(ca: tuple[trustme.CA, Path, Path, Path]) -> None:
    _, cert, key, _ = ca
    async with AsyncHub(port=0, certfile=cert, keyfile=key) as hub:
        with pytest.raises(livenb.HubUnreachableError, match="does not trust"):
            await AsyncClient(hub.url, hub.token).connect()


async def test_a_plain_text_client_against_a_tls_hub_fails_fast(
    ca: tuple[trustme.CA, Path, Path, Path], unit: float
) -> None:
    _, cert, key, _ = ca
    async with AsyncHub(port=0, certfile=cert, keyfile=key) as hub:
        plain = hub.url.replace("wss://", "ws://")
        started = time.monotonic()
        with pytest.raises(livenb.HubUnreachableError, match="wss://"):
            await AsyncClient(plain, hub.token, open_timeout=unit).connect()
        assert time.monotonic() - started < unit


def test_tls_true_makes_a_self_signed_certificate_the_client_can_trust(unit: float) -> None:
    with livenb.serve(port=0, tls=True) as hub:
        assert hub.url.startswith("wss://") and hub.cafile is not None
        assert "BEGIN CERTIFICATE" in hub.cafile.read_text()
        with hub.connect() as c:  # passes cafile=hub.cafile
            assert c.publish("t", 1, ack=True) == 1
        with livenb.connect(hub.url, token=hub.token, cafile=hub.cafile) as c:
            assert c.publish("t", 2, ack=True) == 2
        with pytest.raises(livenb.HubUnreachableError):
            livenb.connect(hub.url, token=hub.token)  # the system CAs do not know it
        context = ssl.create_default_context(cafile=str(hub.cafile))
        with livenb.connect(hub.url, token=hub.token, ssl=context) as c:
            assert c.publish("t", 3, ack=True) == 3


def test_network_bind_is_allowed_with_token_and_tls() -> None:
    hub = livenb.AsyncHub("0.0.0.0", port=0, tls=True)  # no insecure=True needed
    assert hub.tls
    with pytest.raises(livenb.LivenbError, match="TLS"):
        livenb.AsyncHub("0.0.0.0", port=0, tls=True, auth=False)


def _san(cert_path: Path) -> list[str]:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n.value) for n in names]


def test_the_self_signed_certificate_names_the_bound_host(unit: float) -> None:
    # 127.0.0.2 is a loopback address the default names do not cover: the client checks the
    # certificate against the host in the URL, so it must be in the certificate.
    with livenb.serve("127.0.0.2", port=0, tls=True) as hub:
        assert hub.url.startswith("wss://127.0.0.2:") and hub.cafile is not None
        assert "127.0.0.2" in _san(hub.cafile)
        with hub.connect() as c:
            assert c.publish("t", 1, ack=True) == 1


def test_a_wildcard_bind_certificate_names_this_machine(tmp_path: Path) -> None:
    import socket

    from livenb._tls import certificate_names, self_signed

    names = certificate_names("0.0.0.0")
    assert names[:3] == ["localhost", "127.0.0.1", "::1"]
    assert socket.gethostname() in names and "0.0.0.0" not in names
    cert, key = self_signed(tmp_path, "0.0.0.0")
    assert _san(cert) == names
    assert key.stat().st_mode & 0o077 == 0  # the private key is the owner's alone
    assert certificate_names("[fe80::1%eth0]")[-1] == "fe80::1"
    assert certificate_names("hub.example.test")[-1] == "hub.example.test"
