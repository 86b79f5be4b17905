"""The hub's own web page: static files for plain HTTP GETs on the hub's port.

A request that is not a WebSocket upgrade gets the page (``index.html`` with ``page.js``) or
the browser client (``livenb.js``), found by the last segment of its path so the page works
under any prefix: ``/``, ``/p/<page key>/`` and behind jupyter-server-proxy's
``/proxy/<port>/``. The files hold no secret: the token is typed in, or given in the URL's
fragment, which browsers never send. Responses forbid framing and scripts from elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

_STATIC: Final = Path(__file__).parent / "static"
_FILES: Final = {
    "": "index.html",
    "index.html": "index.html",
    "page.js": "page.js",
    "livenb.js": "livenb.js",
}
_TYPES: Final = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def page(path: str) -> tuple[str, bytes] | None:
    """``(content type, body)`` of the file ``path`` asks for; None when there is none."""
    name = path.split("?", 1)[0].split("#", 1)[0].rsplit("/", 1)[-1]
    if name == "favicon.ico":  # browsers ask for it; an empty one keeps their consoles clean
        return "image/x-icon", b""
    file = _FILES.get(name)
    if file is None:
        return None
    return _TYPES[Path(file).suffix], (_STATIC / file).read_bytes()


def is_upgrade(connection: str | None, upgrade: str | None) -> bool:
    """True for a WebSocket upgrade request (the rest may get the page)."""
    tokens = {t.strip().lower() for t in (connection or "").split(",")}
    return "upgrade" in tokens and (upgrade or "").strip().lower() == "websocket"
