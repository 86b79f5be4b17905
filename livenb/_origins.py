"""Origin allowlists and loopback checks. Pure, no I/O.

A browser names the page that opened a WebSocket in its ``Origin`` header; a hub accepts a
browser connection only when that origin matches an allowed one exactly: same scheme, host and
port (default ports made explicit), never by substring or suffix (``https://evil-example.com``
is not ``https://example.com``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}

Origin = tuple[str, str, int]


def parse_origin(origin: str) -> Origin | None:
    """``(scheme, host, port)`` of an origin such as ``https://example.com:8443``, or None
    when it is not a plain scheme://host[:port] origin (e.g. ``null``, a path, credentials)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def allowlist(origins: Iterable[str]) -> frozenset[Origin]:
    """Parse allowed origins; raise ValueError naming any that is not a plain origin."""
    parsed = set()
    for origin in origins:
        value = parse_origin(origin)
        if value is None:
            raise ValueError(
                f"{origin!r} is not an origin; give scheme://host[:port], e.g. "
                "'http://localhost:8888'"
            )
        parsed.add(value)
    return frozenset(parsed)


def origin_allowed(origin: str | None, allowed: frozenset[Origin]) -> bool:
    """True for a request without ``Origin`` (not a browser) or with an allowed one."""
    if origin is None:
        return True
    value = parse_origin(origin)
    return value is not None and value in allowed


def is_loopback(host: str) -> bool:
    """True when binding ``host`` only exposes the hub to this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
