"""TCP framing (RFC 3261 §18.3, RFC 5626 keep-alives)."""

from __future__ import annotations

import pytest

from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.framing import StreamFramer

MSG = (
    b"OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n"
    b"To: <sip:h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 5\r\n\r\nhello"
)
COMPACT = b"SIP/2.0 200 OK\r\nv: SIP/2.0/TCP h\r\nl:0\r\n\r\n"


def test_whole_messages_and_keepalives() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n" + MSG + b"\r\n\r\n" + COMPACT + MSG[:10]) == [MSG, COMPACT]
    assert framer.pings == 2
    assert framer.buffered == 10
    assert framer.feed(MSG[10:]) == [MSG]


def test_byte_by_byte() -> None:
    framer = StreamFramer()
    out: list[bytes] = []
    stream = b"\r\n\r\n" + MSG + COMPACT + b"\r\n" + b"\r\n" + MSG
    for i in range(len(stream)):
        out.extend(framer.feed(stream[i : i + 1]))
    assert out == [MSG, COMPACT, MSG]
    assert framer.pings == 2


def test_lf_only() -> None:
    msg = b"SIP/2.0 200 OK\nContent-Length: 2\n\nok"
    assert StreamFramer().feed(msg + msg) == [msg, msg]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", 400),  # no Content-Length
        (b"SIP/2.0 200 OK\r\nContent-Length: x\r\n\r\n", 400),
        (b"SIP/2.0 200 OK\r\nContent-Length: 1\r\nl: 2\r\n\r\n", 400),
        (b"SIP/2.0 200 OK\r\nContent-Length: 70000\r\n\r\n", 413),
        (b"SIP/2.0 200 OK\r\nX: " + b"y" * 70000, 413),
    ],
)
def test_errors(data: bytes, status: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        StreamFramer().feed(data)
    assert info.value.status == status
