"""SIP messages as received: the bytes, indexed once, read on demand.

:func:`parse_message` makes one pass over a datagram or one framed stream
message (RFC 3261 §7): it reads the start line and records, for each header
field, where its name, value and line are in the received bytes.  Header
values are decoded and parsed only when first read (Via, From, To, Contact,
the Request-URI); the few that decide whether a message is acceptable at
all (Call-ID, CSeq, Max-Forwards, Content-Length) are checked at once.

Malformed input raises :class:`RemoteProtocolError` carrying the status to
answer with, and nothing else: 400 in general, 413 above 65535 bytes, 416 for
a Request-URI scheme other than sip/sips/tel, 505 for a version other than
SIP/2.0.  When the header section was readable, a request's error is an
:class:`InvalidRequest` that carries the request, so the caller can still
build the error response from its Via/From/To/Call-ID/CSeq lines.
"""

from __future__ import annotations

from collections.abc import Sequence

from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.grammar import (
    NON_LIST_HEADERS,
    header_key,
    is_digits,
    is_token,
    split_commas,
    unfold,
)
from sipfork.sip.header_index import (
    FOLDED,
    LINE_START,
    VALUE_END,
    VALUE_START,
    Field,
    index_header_section,
)
from sipfork.sip.headers import CSeq, Via, parse_cseq, parse_name_addrs, parse_via
from sipfork.sip.uri import SUPPORTED_SCHEMES, NameAddr, SipUri, TelUri, parse_name_addr, parse_uri

#: The largest message we accept (RFC 3261 §18.1.1 bounds UDP datagrams by
#: the 16-bit length; we use the same bound for stream messages).
MAX_MESSAGE_SIZE = 65535

_NON_LIST_KEYS = frozenset(name.encode() for name in NON_LIST_HEADERS)
_MANDATORY = (b"via", b"from", b"to", b"call-id", b"cseq")
# Headers that must appear once: two differing copies make the message ambiguous.
_SINGLETONS = (b"from", b"to", b"call-id", b"cseq", b"content-length", b"max-forwards")
_MANDATORY_SET = frozenset(_MANDATORY)


class InvalidRequest(RemoteProtocolError):
    """A request whose header section could be indexed but that is malformed.

    ``request`` lets the caller answer with ``status`` (RFC 3261 §8.2,
    §16.3); its lazily parsed views may raise RemoteProtocolError in turn.
    """

    def __init__(self, message: str, status: int, request: Request) -> None:
        super().__init__(message, status)
        self.request = request


class Message:
    """A received SIP message: ``raw`` bytes plus an index of its header fields.

    Mutable only in its caches of parsed header views.
    """

    __slots__ = (
        "raw",
        "fields",
        "_index",
        "header_end",
        "body_start",
        "body_end",
        "_call_id",
        "_cseq",
        "_max_forwards",
        "_vias",
        "_top_via",
        "_from",
        "_to",
        "_contacts",
        "_routes",
    )

    raw: bytes
    fields: tuple[Field, ...]
    header_end: int
    body_start: int
    body_end: int

    def __init__(self, raw: bytes, fields: Sequence[Field], header_end: int, body_start: int, body_end: int,
                 index: dict[bytes, tuple[Field, ...]] | None = None) -> None:
        """``index``: the fields by key, when the caller built it with them."""
        self.raw = raw
        self.fields = fields = tuple(fields)
        # Tuples, not lists: a message lives as long as its transaction, and
        # tuples of plain values drop out of the cyclic GC's work (lists never do).
        if index is None:
            index = {}
            get = index.get
            for item in fields:
                key = item[0]
                found = get(key)
                index[key] = (item,) if found is None else found + (item,)
        self._index = index
        self.header_end = header_end  # where the blank line starts
        self.body_start = body_start
        self.body_end = body_end
        self._call_id: str | None = None
        self._cseq: CSeq | None = None
        self._max_forwards: int | None = None
        self._vias: list[Via] | None = None
        self._top_via: Via | None = None
        self._from: NameAddr | None = None
        self._to: NameAddr | None = None
        self._contacts: list[NameAddr] | None = None
        self._routes: list[NameAddr] | None = None

    # -- raw header access -------------------------------------------------

    def field_text(self, item: Field) -> str:
        """The value of one indexed field as text: unfolded and stripped."""
        text = self.raw[item[VALUE_START] : item[VALUE_END]].decode("utf-8", "surrogateescape")
        return unfold(text).strip(" \t") if item[FOLDED] else text

    def field_name(self, item: Field) -> str:
        """The header name of one field as written (compact or long)."""
        raw = self.raw
        colon = raw.find(b":", item[LINE_START])
        return raw[item[LINE_START] : colon].rstrip(b" \t").decode("latin-1")

    def fields_named(self, name: str) -> tuple[Field, ...]:
        """The indexed fields of header ``name`` (either form, any case), in order."""
        return self._index.get(header_key(name), ())

    def header(self, name: str) -> str | None:
        """The first line's value of header ``name`` (unfolded, stripped), or None."""
        found = self._index.get(header_key(name))
        return self.field_text(found[0]) if found else None

    def header_lines(self, name: str) -> list[str]:
        """Each line's whole value of header ``name``, in order."""
        return [self.field_text(item) for item in self._index.get(header_key(name), ())]

    def header_values(self, name: str) -> list[str]:
        """All values of header ``name``, comma lists split (quote- and <>-aware).

        Headers whose grammar allows bare commas (Authorization, Date, ...)
        are not split: each line is one value (RFC 3261 §7.3.1).
        """
        key = header_key(name)
        found = self._index.get(key)
        if not found:
            return []
        if key in _NON_LIST_KEYS:
            return [self.field_text(item) for item in found]
        values: list[str] = []
        for item in found:
            values.extend(split_commas(self.field_text(item)))
        return values

    def has_header(self, name: str) -> bool:
        return header_key(name) in self._index

    def header_items(self) -> list[tuple[str, str]]:
        """Every header line as (name as written, value), in order."""
        return [(self.field_name(item), self.field_text(item)) for item in self.fields]

    # -- typed views, parsed on first use -----------------------------------

    @property
    def call_id(self) -> str:
        """Call-ID (RFC 3261 §20.8), checked when parsing."""
        if self._call_id is None:
            self._call_id = _check_call_id(self.header("call-id"))
        return self._call_id

    @property
    def cseq(self) -> CSeq:
        """CSeq (RFC 3261 §20.16), checked when parsing."""
        if self._cseq is None:
            self._cseq = parse_cseq(self.header("cseq") or "")
        return self._cseq

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (RFC 3261 §20.22), None when absent."""
        if self._max_forwards is None:
            text = self.header("max-forwards")
            if text is None:
                return None
            if not is_digits(text):
                raise RemoteProtocolError(f"bad Max-Forwards {text!r}")
            self._max_forwards = int(text)
        return self._max_forwards

    @property
    def vias(self) -> list[Via]:
        """Every Via value in order (RFC 3261 §20.42)."""
        if self._vias is None:
            vias = [parse_via(value) for value in self.header_values("via")]
            if not vias:
                raise RemoteProtocolError("no Via")
            self._vias = vias
        return self._vias

    @property
    def top_via(self) -> Via:
        """The first Via value; parses only that one."""
        if self._top_via is None:
            if self._vias is not None:
                self._top_via = self._vias[0]
            else:
                raw = self.raw
                for item in self._index.get(b"via", ()):
                    if not item[FOLDED] and raw.find(b",", item[VALUE_START], item[VALUE_END]) < 0:
                        # One value on an unfolded line (the usual case): already stripped.
                        if item[VALUE_END] > item[VALUE_START]:
                            self._top_via = parse_via(self.field_text(item))
                            break
                        continue
                    values = split_commas(self.field_text(item))
                    if values:
                        self._top_via = parse_via(values[0])
                        break
                else:
                    raise RemoteProtocolError("no Via")
        return self._top_via

    @property
    def from_(self) -> NameAddr:
        """The From header (RFC 3261 §20.20)."""
        if self._from is None:
            self._from = parse_name_addr(self.header("from") or "")
        return self._from

    @property
    def to(self) -> NameAddr:
        """The To header (RFC 3261 §20.39)."""
        if self._to is None:
            self._to = parse_name_addr(self.header("to") or "")
        return self._to

    @property
    def from_tag(self) -> str | None:
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        return self.to.tag

    @property
    def contacts(self) -> list[NameAddr]:
        """The Contact values; a ``*`` is refused here (see headers.parse_contacts)."""
        if self._contacts is None:
            self._contacts = parse_name_addrs(self.header_values("contact"))
        return self._contacts

    @property
    def routes(self) -> list[NameAddr]:
        """The Route values in order (RFC 3261 §20.34)."""
        if self._routes is None:
            self._routes = parse_name_addrs(self.header_values("route"))
        return self._routes

    @property
    def body(self) -> bytes:
        """The message body, Content-Length bytes (RFC 3261 §18.3)."""
        return self.raw[self.body_start : self.body_end]


class Request(Message):
    """A request: method, Request-URI text (``uri``) and its parsed form (``ruri``)."""

    __slots__ = ("method", "uri", "uri_start", "uri_end", "_ruri")

    method: str
    uri: str
    uri_start: int
    uri_end: int

    def __init__(
        self,
        raw: bytes,
        fields: Sequence[Field],
        header_end: int,
        body_start: int,
        body_end: int,
        *,
        method: str,
        uri: str,
        uri_start: int,
        uri_end: int,
        index: dict[bytes, tuple[Field, ...]] | None = None,
    ) -> None:
        super().__init__(raw, fields, header_end, body_start, body_end, index)
        self.method = method
        self.uri = uri
        self.uri_start = uri_start  # offsets of the Request-URI, for edits
        self.uri_end = uri_end
        self._ruri: SipUri | TelUri | None = None

    @property
    def ruri(self) -> SipUri | TelUri:
        """The parsed Request-URI (RFC 3261 §19.1)."""
        if self._ruri is None:
            self._ruri = parse_uri(self.uri)
        return self._ruri

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    """A response: status code and reason phrase."""

    __slots__ = ("status", "reason")

    status: int
    reason: str

    def __init__(
        self,
        raw: bytes,
        fields: Sequence[Field],
        header_end: int,
        body_start: int,
        body_end: int,
        *,
        status: int,
        reason: str,
        index: dict[bytes, tuple[Field, ...]] | None = None,
    ) -> None:
        super().__init__(raw, fields, header_end, body_start, body_end, index)
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def _check_call_id(text: str | None) -> str:
    # callid = word ["@" word]: never empty, never white space inside.
    if not text or " " in text or "\t" in text or "\r" in text or "\n" in text:
        raise RemoteProtocolError(f"bad Call-ID {text!r}")
    return text


def _parse_start_line(line: bytes) -> tuple[str, str, str]:
    """Split a start line into its three parts (RFC 3261 §7.1, §7.2)."""
    text = line.decode("utf-8", "surrogateescape")
    parts = text.split(" ", 2)
    if len(parts) < 2:
        raise RemoteProtocolError(f"bad start line {text[:80]!r}")
    if len(parts) == 2:
        parts.append("")
    return parts[0], parts[1], parts[2]


def _is_sip_2_0(version: str) -> bool:
    return version.upper() == "SIP/2.0"


def parse_message(data: bytes) -> Request | Response:
    """Parse one datagram or one framed stream message (RFC 3261 §7, §18.3).

    Requires Via, From, To, Call-ID and CSeq.  Without Content-Length the body
    is the rest of the datagram; with it, extra bytes are discarded and a
    shorter remainder is an error.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise RemoteProtocolError("message too large", status=413)
    pos = 0
    size = len(data)
    # RFC 3261 §7.5: ignore CRLFs before the start line.
    while pos < size and data[pos] in (13, 10):
        pos += 1
    newline = data.find(b"\n", pos)
    if newline < 0:
        raise RemoteProtocolError("no start line")
    end = newline - 1 if newline > pos and data[newline - 1] == 13 else newline
    if data.startswith(b"SIP/2.0 ", pos) and data[pos + 11 : pos + 12] == b" ":
        # The usual status line: "SIP/2.0 " three digits, a space, the reason.
        code = data[pos + 8 : pos + 11]
        if code.isdigit() and b"100" <= code <= b"699":
            fields, header_end, body_start, index = index_header_section(data, newline + 1)
            message = Response(data, fields, header_end, body_start, size, status=int(code),
                               reason=data[pos + 12 : end].decode("utf-8", "surrogateescape"), index=index)
            _check_headers(message, data)
            return message
    first, second, third = _parse_start_line(data[pos:end])
    fields, header_end, body_start, index = index_header_section(data, newline + 1)

    message: Request | Response
    if first.upper().startswith("SIP/"):
        # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        if not _is_sip_2_0(first):
            raise RemoteProtocolError(f"unsupported version {first!r}", status=505)
        if len(second) != 3 or not second.isascii() or not second.isdigit() or not "100" <= second <= "699":
            raise RemoteProtocolError(f"bad status code {second!r}")
        message = Response(data, fields, header_end, body_start, size, status=int(second), reason=third,
                           index=index)
        _check_headers(message, data)
        return message

    # Request-Line = Method SP Request-URI SP SIP-Version
    if not is_token(first) or not second or " " in third:
        raise RemoteProtocolError("bad request line")
    uri_start = pos + (len(first) if first.isascii() else len(first.encode("utf-8", "surrogateescape"))) + 1
    uri_end = uri_start + (len(second) if second.isascii() else len(second.encode("utf-8", "surrogateescape")))
    request = Request(
        data, fields, header_end, body_start, size, method=first, uri=second, uri_start=uri_start, uri_end=uri_end,
        index=index,
    )
    try:
        if not third.upper().startswith("SIP/"):
            raise RemoteProtocolError(f"bad version {third!r}")
        if not _is_sip_2_0(third):
            raise RemoteProtocolError(f"unsupported version {third!r}", status=505)
        scheme, colon, _ = second.partition(":")
        if not colon or not is_token(scheme):
            raise RemoteProtocolError(f"bad Request-URI {second!r}")
        if scheme.lower() not in SUPPORTED_SCHEMES:
            raise RemoteProtocolError(f"unsupported URI scheme {scheme!r}", status=416)
        _check_headers(request, data)
        if request.cseq.method != first:
            raise RemoteProtocolError(f"CSeq method {request.cseq.method!r} is not {first!r}")
        _ = request.max_forwards  # checked now: a bad value is answered with 400
    except InvalidRequest:
        raise
    except RemoteProtocolError as error:
        raise InvalidRequest(str(error), error.status, request) from None
    return request


def _check_headers(message: Message, data: bytes) -> None:
    """Mandatory and singleton headers, Content-Length, Call-ID, CSeq (RFC 3261 §8.1.1, §20.14)."""
    index = message._index
    if not index.keys() >= _MANDATORY_SET:
        for key in _MANDATORY:
            if key not in index:
                raise RemoteProtocolError(f"missing {key.decode()} header")
    if len(index) < len(message.fields):  # some header came more than once
        for key in _SINGLETONS:
            found = index.get(key)
            if found is not None and len(found) > 1:
                raise RemoteProtocolError(f"more than one {key.decode()} header")
    found = index.get(b"content-length")
    if found is not None:
        item = found[0]
        length = message.field_text(item) if item[5] else data[item[2] : item[3]].decode("utf-8", "surrogateescape")
        if not is_digits(length):
            raise RemoteProtocolError(f"bad Content-Length {length!r}")
        body_end = message.body_start + int(length)
        if body_end > len(data):
            raise RemoteProtocolError("Content-Length larger than the body")
        message.body_end = body_end
    # Validated now, so a bad one is answered with 400.
    item = index[b"call-id"][0]
    text = message.field_text(item) if item[5] else data[item[2] : item[3]].decode("utf-8", "surrogateescape")
    if not text or " " in text or "\t" in text or "\r" in text or "\n" in text:
        raise RemoteProtocolError(f"bad Call-ID {text!r}")  # as _check_call_id says
    message._call_id = text
    item = index[b"cseq"][0]
    message._cseq = parse_cseq(
        message.field_text(item) if item[5] else data[item[2] : item[3]].decode("utf-8", "surrogateescape")
    )

