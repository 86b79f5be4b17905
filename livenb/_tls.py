"""TLS for hubs and clients: a self-signed localhost certificate on demand, and contexts.

``cryptography`` is needed only for the self-signed certificate (``tls=True`` without
``certfile``); it is imported here, on first use.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from pathlib import Path

from ._errors import LivenbError


def self_signed(directory: Path | None = None) -> tuple[Path, Path]:
    """Write a new certificate and key for ``localhost``, ``127.0.0.1`` and ``::1`` (valid 30
    days) into ``directory`` (a new private temporary one by default); return their paths.
    The certificate is its own CA: clients trust it with ``cafile=<cert path>``."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise LivenbError(
            "tls=True needs the 'cryptography' package for its self-signed certificate: "
            "pip install 'livenb[tls]', or pass certfile= and keyfile="
        ) from None
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "livenb hub (localhost)")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = directory or Path(tempfile.mkdtemp(prefix="livenb-tls-"))
    cert_path = folder / "hub-cert.pem"
    key_path = folder / "hub-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # private: owner only
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def server_context(certfile: str | os.PathLike[str], keyfile: str | os.PathLike[str] | None) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+) with the given certificate chain and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise LivenbError(f"cannot load the TLS certificate {certfile}: {exc}") from exc
    return context


def client_context(cafile: str | os.PathLike[str] | None) -> ssl.SSLContext:
    """A verifying TLS client context: the system's CAs, or only ``cafile`` when given."""
    try:
        return ssl.create_default_context(cafile=None if cafile is None else str(cafile))
    except (OSError, ssl.SSLError) as exc:
        raise LivenbError(f"cannot load the CA file {cafile}: {exc}") from exc
