"""livenb: notebooks that talk back.

Start a WebSocket hub from a cell, publish records to named topics from anywhere, and
subscribe into bounded, live pandas DataFrames::

    import livenb
    hub = livenb.serve(port=0)
    client = hub.connect()
    sub = client.subscribe("ticks", window=10_000)
    client.publish("ticks", {"sym": "ACME", "px": 101.5})
    sub.wait(1)
    sub.frame

``import livenb`` stays light: pandas is imported when a frame is first built.
"""

from __future__ import annotations

from ._client import AsyncClient, AsyncSubscription, Record
from ._errors import (
    AuthenticationError,
    ConnectionClosedError,
    HubUnreachableError,
    InvalidTopicError,
    LivenbError,
    LivenbTimeoutError,
    LoopThreadError,
    ProtocolError,
    RecordTooLargeError,
    RemoteError,
    SerializationError,
)
from ._history import HistoryLimits
from ._protocol import Gap
from ._server import AsyncHub
from ._sync import Client, Hub, Subscription, connect, serve
from ._window import Window

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncHub",
    "AsyncSubscription",
    "AuthenticationError",
    "Client",
    "ConnectionClosedError",
    "Gap",
    "HistoryLimits",
    "Hub",
    "HubUnreachableError",
    "InvalidTopicError",
    "LivenbError",
    "LivenbTimeoutError",
    "LoopThreadError",
    "ProtocolError",
    "Record",
    "RecordTooLargeError",
    "RemoteError",
    "SerializationError",
    "Subscription",
    "Window",
    "__version__",
    "connect",
    "serve",
]
