"""File descriptors: every connection holds one, so a hub raises its own soft limit.

A process may raise its soft ``RLIMIT_NOFILE`` up to the hard limit without privileges.
Debian's default soft limit (1,024) is below livenb's default ``max_connections`` plus the
hub's own files, so the hub asks for what it needs at start and says so when the hard limit
is lower (raise it with ``ulimit -Hn``, systemd's ``LimitNOFILE=`` or limits.conf).
"""

from __future__ import annotations

import logging
from typing import Final

log = logging.getLogger("livenb.hub")

RESERVED: Final = 64  # the hub's own files: journal, sockets, logs, imports


def raise_soft_limit(wanted: int) -> tuple[int, int] | None:
    """Raise the soft file-descriptor limit to at least ``wanted`` where the hard limit
    allows (it is never lowered); return ``(soft, hard)`` after, or None where the platform
    has no such limit."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("livenb hub: cannot raise the file-descriptor limit: %s", exc)
    return soft, hard


def check_capacity(max_connections: int) -> int | None:
    """Make room for ``max_connections``; warn when the hard limit leaves too little.
    Returns the soft limit now in force (None: no such limit here)."""
    limits = raise_soft_limit(max_connections + RESERVED)
    if limits is None:
        return None
    soft, hard = limits
    if soft < max_connections + RESERVED:
        log.warning(
            "livenb hub: max_connections=%d, but this process may open only %d files (hard "
            "limit %d): connections beyond about %d will fail. Raise the hard limit "
            "(ulimit -Hn, LimitNOFILE=) or lower max_connections",
            max_connections,
            soft,
            hard,
            max(0, soft - RESERVED),
        )
    return soft
