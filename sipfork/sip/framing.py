"""Cutting a TCP byte stream into SIP messages (RFC 3261 §18.3, RFC 5626 §3.5.1).

On a stream, Content-Length is mandatory and says where the body ends.
CRLFs between messages are skipped (§7.5); a double CRLF is a keep-alive
ping (RFC 5626 §4.4.1), counted in ``pings`` so the caller can answer each
with a single CRLF pong.  Data may arrive split at any byte.
"""

from __future__ import annotations

import re

from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.message import MAX_MESSAGE_SIZE

# The blank line ending the header section; a bare LF is tolerated as in the parser.
_HEADER_END_RE = re.compile(rb"\n\r?\n")
_CONTENT_LENGTH_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
_DIGITS_RE = re.compile(rb"[0-9]{1,10}")


class StreamFramer:
    """Frames one connection's byte stream.  After an error the connection must be closed."""

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_size = max_size
        self.pings = 0  # keep-alive pings (CRLFCRLF) seen so far
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already searched for the header end
        self._needed: int | None = None  # length of the message being received, once known
        self._newlines = 0  # LFs skipped between messages since the last ping or message

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every message now complete, in order."""
        self._buffer += data
        messages: list[bytes] = []
        while True:
            message = self._next()
            if message is None:
                return messages
            messages.append(message)

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a message."""
        return len(self._buffer)

    def _skip_keepalives(self) -> None:
        buffer = self._buffer
        skip = 0
        size = len(buffer)
        while skip < size and buffer[skip] in (13, 10):
            if buffer[skip] == 10:
                self._newlines += 1
                if self._newlines == 2:
                    self.pings += 1
                    self._newlines = 0
            skip += 1
        if skip:
            del buffer[:skip]

    def _next(self) -> bytes | None:
        buffer = self._buffer
        if self._needed is None:
            if self._scanned == 0:
                self._skip_keepalives()
                if not buffer:
                    return None
                self._newlines = 0
            match = _HEADER_END_RE.search(buffer, max(self._scanned - 2, 0))
            if match is None:
                if len(buffer) > self.max_size:
                    raise RemoteProtocolError("header section too large", status=413)
                self._scanned = len(buffer)
                return None
            header_end = match.end()
            if header_end > self.max_size:
                raise RemoteProtocolError("header section too large", status=413)
            self._needed = header_end + _content_length(bytes(buffer[:header_end]))
            if self._needed > self.max_size:
                raise RemoteProtocolError("message too large", status=413)
        if len(buffer) < self._needed:
            return None
        message = bytes(buffer[: self._needed])
        del buffer[: self._needed]
        self._needed = None
        self._scanned = 0
        return message


def _content_length(header: bytes) -> int:
    """The one Content-Length of a header section (RFC 3261 §18.3, §20.14)."""
    values = {value.strip(b" \t") for value in _CONTENT_LENGTH_RE.findall(header)}
    if not values:
        raise RemoteProtocolError("Content-Length is mandatory on a stream")
    if len(values) > 1:
        raise RemoteProtocolError("conflicting Content-Length headers")
    value = values.pop()
    if _DIGITS_RE.fullmatch(value) is None:
        raise RemoteProtocolError(f"bad Content-Length {value[:20]!r}")
    return int(value)
