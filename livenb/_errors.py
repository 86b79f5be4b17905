"""The livenb exception hierarchy: one root, specific subclasses, messages that say what to do."""

from __future__ import annotations

import builtins


class LivenbError(Exception):
    """Root of every error livenb raises on purpose."""


class InvalidTopicError(LivenbError, ValueError):
    """A topic name or pattern breaks the naming rules (see docs/protocol.md)."""


class ProtocolError(LivenbError):
    """A frame could not be decoded or validated.

    ``code`` is the stable error code sent to the peer in ``{"op":"err"}``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RemoteError(LivenbError):
    """The hub answered a request of ours with ``{"op":"err"}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"hub refused the request ({code}): {message}")
        self.code = code
        self.message = message


class ConnectionClosedError(LivenbError, ConnectionError):
    """The connection to the hub is closed; create a new client (or wait for a reconnect)."""


class AuthenticationError(LivenbError, PermissionError):
    """The hub rejected our access token. Pass the hub's token (``hub.token``) to ``connect``."""


class LivenbTimeoutError(LivenbError, builtins.TimeoutError):
    """A blocking call did not finish within its timeout. The operation was cancelled."""


class LoopThreadError(LivenbError, RuntimeError):
    """A blocking call was made from livenb's own loop thread, where it would deadlock.

    Inside callbacks (which run on the loop thread) use the async API instead.
    """


class SerializationError(LivenbError, TypeError):
    """A record could not be encoded as JSON."""


class HubUnreachableError(LivenbError, ConnectionError):
    """No hub answered at the URL (wrong address, hub not started, or a firewall)."""


class RecordTooLargeError(LivenbError, ValueError):
    """A record is larger than a hub accepts in one frame; split it or raise the limits."""
