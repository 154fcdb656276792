"""Forwarding by editing the received bytes (RFC 3261 §16.6, §16.7 step 3).

A proxy changes little in what it forwards: a Via on top, the Request-URI,
Max-Forwards, the Route values it consumed, its Record-Route.  Rather than
re-serialise the message, we compute every edit's position from the header
index made while parsing and splice the bytes once.  Everything else
(including the body and headers we never parsed) goes out as it came in.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter

from sipfork.sip.builder import InviteLines
from sipfork.sip.errors import LocalProtocolError, RemoteProtocolError
from sipfork.sip.grammar import header_key, split_outside
from sipfork.sip.header_index import (
    FOLDED,
    KEY,
    LINE_END,
    LINE_START,
    VALUE_END,
    VALUE_START,
    Field,
)
from sipfork.sip.headers import set_via_received
from sipfork.sip.message import Message, Request, Response

CRLF = b"\r\n"
# (start, end, replacement): an insertion has start == end.
Edit = tuple[int, int, bytes]
_EDIT_ORDER = itemgetter(0, 1)
# Headers a forwarding proxy must never drop: the message would be broken.
_UNDROPPABLE = frozenset({b"via", b"max-forwards", b"content-length", b"call-id", b"cseq", b"from", b"to"})
_SPACE = b" \t\r\n"


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _line(name: str, value: str) -> bytes:
    if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
        raise LocalProtocolError(f"header {name!r} would break the message")
    return _encode(f"{name}: {value}") + CRLF


def value_spans(message: Message, field: Field) -> list[tuple[int, int]]:
    """Byte spans of each non-empty comma-separated value in one header field.

    Quote- and ``<>``-aware like ``header_values`` (RFC 3261 §7.3.1), so the
    n-th span is the n-th value that ``header_values`` returns for that line.
    """
    raw = message.raw
    start = field[VALUE_START]
    end = field[VALUE_END]
    if not field[FOLDED] and raw.find(b",", start, end) < 0:
        # One value on an unfolded line: the indexer already stripped it.
        return [(start, end)] if end > start else []
    text = raw[start:end].decode("utf-8", "surrogateescape")
    ascii_only = text.isascii()
    spans: list[tuple[int, int]] = []
    offset = 0
    for part in split_outside(text, ","):
        stripped = part.strip(" \t\r\n")
        if stripped:
            lead = offset + part.index(stripped[0])
            tail = lead + len(stripped)
            if not ascii_only:  # character offsets to byte offsets
                lead = len(_encode(text[:lead]))
                tail = len(_encode(text[:tail]))
            spans.append((start + lead, start + tail))
        offset += len(part) + 1
    return spans


def _top_via(message: Message) -> tuple[Field, list[tuple[int, int]]]:
    """The Via field holding the top Via value, and that field's value spans."""
    for field in message.fields_named("via"):
        spans = value_spans(message, field)
        if spans:
            return field, spans
    raise RemoteProtocolError("no Via")


def _splice(raw: bytes, end: int, edits: list[Edit]) -> bytes:
    """Apply non-overlapping edits to ``raw[:end]`` in one pass."""
    edits.sort(key=_EDIT_ORDER)  # stable: insertions keep their order
    out: list[bytes] = []
    pos = 0
    for start, stop, replacement in edits:
        if start < pos:
            raise LocalProtocolError("overlapping edits")
        out.append(raw[pos:start])
        out.append(replacement)
        pos = stop
    out.append(raw[pos:end])
    return b"".join(out)


def _content_length(message: Message, edits: list[Edit]) -> None:
    """Add Content-Length when the datagram had none: a stream needs it (RFC 3261 §18.3)."""
    if not message.has_header("content-length"):
        edits.append((message.header_end, message.header_end, b"Content-Length: %d\r\n" % len(message.body)))


def _renumber_cseq(message: Message, number: int, edits: list[Edit]) -> None:
    """Write ``number`` over the CSeq sequence number, keeping the method."""
    fields = message.fields_named("cseq")
    if not fields:
        raise RemoteProtocolError("no CSeq")
    start = fields[0][VALUE_START]
    digits = start
    while digits < fields[0][VALUE_END] and 48 <= message.raw[digits] <= 57:
        digits += 1
    edits.append((start, digits, b"%d" % number))


def _pop_routes(request: Request, count: int, edits: list[Edit]) -> None:
    """Remove the first ``count`` Route values (RFC 3261 §16.4, §16.6 step 6)."""
    for field in request.fields_named("route"):
        if count == 0:
            return
        spans = value_spans(request, field)
        if len(spans) <= count:
            edits.append((field[LINE_START], field[LINE_END], b""))
            count -= len(spans)
        else:
            edits.append((spans[0][0], spans[count][0], b""))
            count = 0
    if count:
        raise LocalProtocolError("fewer Route values than pop_routes")


def forward_request(
    request: Request,
    *,
    via: str,
    request_uri: str | None = None,
    max_forwards: int | None = None,
    received: str | None = None,
    rport: int | None = None,
    pop_routes: int = 0,
    record_route: Sequence[str] = (),
    add_headers: Sequence[tuple[str, str]] = (),
    drop_headers: Sequence[str] = (),
    cseq: int | None = None,
) -> bytes:
    """The request to send to one branch, as edits of the received bytes (RFC 3261 §16.6).

    - ``Via: <via>`` goes above the top Via (step 8); ``received``/``rport``
      are set on the old top Via when given (RFC 3581 §4, §18.2.1).
    - ``request_uri`` replaces the Request-URI (step 2, 6).
    - Max-Forwards becomes ``max_forwards``, or the received value minus one
      (70 when absent) when None (step 3); the header is added if missing.
    - The first ``pop_routes`` Route values are removed (step 6, §16.4).
    - ``record_route`` values go on top of any Record-Route (step 4).
    - ``add_headers`` go before the blank line; every header named in
      ``drop_headers`` is removed (not Via, Max-Forwards, Content-Length,
      Call-ID, CSeq, From or To).
    - ``cseq`` replaces the CSeq number: a branch that answered a gateway's
      challenge counts one higher than the caller (RFC 3261 §22.2), and the
      dialog's later requests with it.
    - Content-Length is added when the datagram had none.
    """
    return ForwardTemplate(
        request, max_forwards=max_forwards, received=received, rport=rport, pop_routes=pop_routes,
        record_route=record_route, add_headers=add_headers, drop_headers=drop_headers, cseq=cseq,
    ).build(via=via, request_uri=request_uri)


class ForwardTemplate:
    """:func:`forward_request` in two steps, for a request forked to several
    branches: every edit but the new Via and the Request-URI is worked out
    once; :meth:`build` then makes each branch's bytes with one join (the
    first by splicing the received bytes, as forward_request does)."""

    __slots__ = ("_request", "_edits", "_built", "_parts", "_uri", "_lines", "_lines_args")

    def __init__(
        self,
        request: Request,
        *,
        max_forwards: int | None = None,
        received: str | None = None,
        rport: int | None = None,
        pop_routes: int = 0,
        record_route: Sequence[str] = (),
        add_headers: Sequence[tuple[str, str]] = (),
        drop_headers: Sequence[str] = (),
        cseq: int | None = None,
    ) -> None:
        raw = request.raw
        edits: list[Edit] = []
        dropped = {header_key(name) for name in drop_headers}
        if dropped & _UNDROPPABLE:
            raise LocalProtocolError(f"cannot drop {sorted(dropped & _UNDROPPABLE)}")
        if dropped:
            edits.extend((f[LINE_START], f[LINE_END], b"") for f in request.fields if f[KEY] in dropped)

        # The Request-URI and the new Via are placeholders, filled in by build().
        edits.append((request.uri_start, request.uri_end, _URI))

        top, top_spans = _top_via(request)
        record_routes = b"".join(_line("Record-Route", value) for value in record_route)
        existing_rr = () if b"record-route" in dropped else request.fields_named("record-route")
        if existing_rr:
            edits.append((existing_rr[0][LINE_START], existing_rr[0][LINE_START], record_routes))
            edits.append((top[LINE_START], top[LINE_START], _VIA))
        else:
            edits.append((top[LINE_START], top[LINE_START], _VIA))
            if record_routes:
                edits.append((top[LINE_START], top[LINE_START], record_routes))

        if received is not None or rport is not None:
            start, end = top_spans[0]
            old = raw[start:end].decode("utf-8", "surrogateescape")
            edits.append((start, end, _encode(set_via_received(old, received=received, rport=rport))))

        if max_forwards is None:
            current = request.max_forwards
            max_forwards = 70 if current is None else max(current - 1, 0)
        if max_forwards < 0:
            raise LocalProtocolError("negative Max-Forwards")
        found = request.fields_named("max-forwards")
        if found:
            edits.append((found[0][VALUE_START], found[0][VALUE_END], b"%d" % max_forwards))
        else:
            edits.append((request.header_end, request.header_end, b"Max-Forwards: %d\r\n" % max_forwards))

        if pop_routes and b"route" not in dropped:
            _pop_routes(request, pop_routes, edits)

        if add_headers:
            added = b"".join(_line(name, value) for name, value in add_headers)
            edits.append((request.header_end, request.header_end, added))
        if cseq is not None:
            _renumber_cseq(request, cseq, edits)
        _content_length(request, edits)
        edits.sort(key=_EDIT_ORDER)  # stable: insertions keep their order
        pos = 0
        for start, stop, _ in edits:
            if start < pos:
                raise LocalProtocolError("overlapping edits")
            pos = stop
        self._request = request
        self._edits = edits
        self._built = False
        self._parts: list[bytes] | None = None  # the bytes between the placeholders, once a 2nd branch is built
        self._uri = raw[request.uri_start : request.uri_end]
        self._lines: tuple[tuple[str, ...], str, str, str, int] | None | bool = False  # False: not worked out
        self._lines_args = (pop_routes, dropped, add_headers, cseq)

    def build(self, *, via: str, request_uri: str | None = None) -> bytes:
        """One branch's bytes: ``Via: <via>`` on top, ``request_uri`` (or the
        received one when None) as the Request-URI."""
        if request_uri is None:
            uri = self._uri
        else:
            if not request_uri or " " in request_uri or "\t" in request_uri or "\r" in request_uri \
                    or "\n" in request_uri:
                raise LocalProtocolError(f"bad Request-URI {request_uri!r}")
            uri = _encode(request_uri)
        via_line = _line("Via", via)
        parts = self._parts
        if parts is None:
            if not self._built:
                # The first branch (often the only one): splice directly.
                self._built = True
                raw = self._request.raw
                out: list[bytes] = []
                pos = 0
                for start, stop, replacement in self._edits:
                    out.append(raw[pos:start])
                    out.append(uri if replacement is _URI else via_line if replacement is _VIA else replacement)
                    pos = stop
                out.append(raw[pos : self._request.body_end])
                return b"".join(out)
            # A second branch: merge the constant bytes once for all the others.
            raw = self._request.raw
            parts = []
            constant = b""
            pos = 0
            for start, stop, replacement in self._edits:
                constant += raw[pos:start]
                if replacement is _URI or replacement is _VIA:
                    parts.append(constant)
                    parts.append(replacement)
                    constant = b""
                else:
                    constant += replacement
                pos = stop
            parts.append(constant + raw[pos : self._request.body_end])
            self._parts = parts
        return b"".join([uri if part is _URI else via_line if part is _VIA else part for part in parts])

    def invite_lines(self, *, via: str, request_uri: str | None = None) -> InviteLines | None:
        """What a CANCEL or an ACK for the branch :meth:`build` made with these
        arguments copies from it, or None when only parsing those bytes can tell."""
        if self._lines is False:
            self._lines = _unchanged_lines(self._request, *self._lines_args)
        if self._lines is None:
            return None
        routes, from_, to, call_id, cseq = self._lines
        return InviteLines(uri=self._request.uri if request_uri is None else request_uri, via=via, routes=routes,
                           from_=from_, to=to, call_id=call_id, cseq=cseq)


# The headers a CANCEL or ACK copies from the INVITE (and the ones that decide
# whether it parses): added or dropped, only parsing the result tells.
_COPIED = frozenset({b"via", b"route", b"from", b"to", b"call-id", b"cseq", b"content-length", b"max-forwards"})


def _unchanged_lines(request: Request, pop_routes: int, dropped: set[bytes], add_headers: Sequence[tuple[str, str]],
                     cseq: int | None) -> tuple[tuple[str, ...], str, str, str, int] | None:
    """Route lines, From, To, Call-ID and CSeq number of every request a
    template builds: the received ones, when the edits leave them as they are."""
    if dropped & _COPIED or any(header_key(name) in _COPIED for name, _ in add_headers):
        return None
    routes = request.fields_named("route")
    for field in routes:
        if pop_routes == 0:
            break
        count = len(value_spans(request, field))
        if count > pop_routes:
            return None  # part of a line removed: its text is what parsing says
        pop_routes -= count
        routes = routes[1:]
    if pop_routes:
        return None
    from_, to, call_id = request.header("from"), request.header("to"), request.header("call-id")
    if from_ is None or to is None or call_id is None:
        return None
    return (tuple(request.field_text(field) for field in routes), from_, to, call_id,
            request.cseq.number if cseq is None else cseq)


_URI: bytes = object()  # type: ignore[assignment]
_VIA: bytes = object()  # type: ignore[assignment]


def forward_response(response: Response, *, cseq: int | None = None) -> bytes:
    """The response to pass upstream: the top Via value removed (RFC 3261 §16.7 step 3).

    The top value may share its line with others; then only it goes.
    ``cseq`` puts back the caller's CSeq number on a branch that counts
    differently (see :func:`forward_request`).
    """
    top, spans = _top_via(response)
    if len(spans) == 1 and cseq is None and response.has_header("content-length"):
        # The usual case: the top Via has a line of its own; only that line goes.
        raw = response.raw
        return raw[: top[LINE_START]] + raw[top[LINE_END] : response.body_end]
    edits: list[Edit]
    if len(spans) == 1:
        edits = [(top[LINE_START], top[LINE_END], b"")]
    else:
        edits = [(spans[0][0], spans[1][0], b"")]
    if cseq is not None:
        _renumber_cseq(response, cseq, edits)
    _content_length(response, edits)
    return _splice(response.raw, response.body_end, edits)
