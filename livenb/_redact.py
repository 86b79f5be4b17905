"""Keep access tokens out of logs.

websockets logs every handshake header (``Authorization: Bearer ...``) and every frame (a
browser's ``{"op":"auth","token":...}``) at DEBUG level. livenb gives websockets its own
loggers and puts :class:`RedactTokens` on them, so turning on DEBUG logging to chase a bug
never writes a token to a log file.
"""

from __future__ import annotations

import logging
import re
from typing import Final

_MASK: Final = "***"

# Each pattern keeps its first group (the label) and masks what follows it.
_SECRETS: Final = (
    re.compile(r"(?i)(\bauthorization\s*:\s*)[^\r\n]*"),  # a header line, whatever its scheme
    re.compile(r"(?i)(\bbearer\s+)[^\s'\",]+"),
    # A JSON token field, escapes included (also an escaped newline around the colon, as a
    # frame's repr shows it); the value may be cut short by a log's truncation.
    re.compile(r"(\"token\"(?:\s|\\[nrt])*:(?:\s|\\[nrt])*\")(?:\\.|[^\"\\])*"),
    re.compile(r"([?&]token=)[^&\s'\"]*"),
)


# websockets logs a frame as `< TEXT '<payload>' [N bytes]`, cutting long payloads in the
# middle: a token can then appear without its "token" label. An auth message's payload is
# therefore masked whole.
_AUTH_FRAME: Final = re.compile(r"^([<>] TEXT ')(.*\bauth\b.*)('(?: \[\d+ bytes\])?)$", re.DOTALL)


def redact(text: str) -> str:
    """``text`` with every access token it carries replaced by ``***``."""
    frame = _AUTH_FRAME.match(text)
    if frame is not None:
        return frame.group(1) + _MASK + frame.group(3)
    for pattern in _SECRETS:
        text = pattern.sub(lambda match: match.group(1) + _MASK, text)
    return text


class RedactTokens(logging.Filter):
    """A logging filter that masks access tokens in a record's message (never drops it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # The formatted message replaces msg/args, so later handlers do not format it again.
        record.msg, record.args = redact(record.getMessage()), None
        return True


def traffic_logger(name: str) -> logging.Logger:
    """The logger to hand websockets for a connection's traffic, with tokens masked."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())
    return logger
