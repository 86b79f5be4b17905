"""TLS for hubs and clients: a self-signed certificate on demand, and contexts.

``cryptography`` is needed only for the self-signed certificate (``tls=True`` without
``certfile``); it is imported here, on first use.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import socket
import ssl
import tempfile
from pathlib import Path
from typing import Any, Final

from ._errors import LivenbError

LOCAL_NAMES: Final = ("localhost", "127.0.0.1", "::1")
_WILDCARDS: Final = ("", "0.0.0.0", "::")


def certificate_names(host: str) -> list[str]:
    """The names a self-signed certificate for a hub bound to ``host`` must carry: always
    ``localhost``, ``127.0.0.1`` and ``::1``; the host itself when it names one address; for a
    wildcard bind (``0.0.0.0``, ``::``) this machine's host name, full name and addresses, the
    names other machines are likely to use."""
    names = list(LOCAL_NAMES)
    extra = [host]
    if host in _WILDCARDS:
        hostname = socket.gethostname()
        extra = [hostname, socket.getfqdn()]
        with contextlib.suppress(OSError):  # no resolvable host name: the names alone
            extra += [str(info[4][0]) for info in socket.getaddrinfo(hostname, None)]
    for name in extra:
        name = name.strip("[]").split("%")[0]  # an IPv6 literal's brackets and zone
        if name and name not in names:
            names.append(name)
    return names


def self_signed(directory: Path | None = None, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """Write a new certificate and key for :func:`certificate_names` of ``host`` (valid 30
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
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"livenb hub ({host or 'any'})"[:64])])
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
            x509.SubjectAlternativeName([_general_name(n) for n in certificate_names(host)]),
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


def _general_name(name: str) -> Any:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


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
