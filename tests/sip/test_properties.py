"""Hypothesis properties of the wire layer.

(a) parse(serialise(model)) gives back the model, however it is formatted
    (compact names, random case, several values per line, folding, LF);
(b) arbitrary and mutated bytes parse or raise RemoteProtocolError, and so
    does every view of a parsed message;
(c) forwarding by edits gives the same message as re-serialising the model
    with the same change;
(d) the stream framer finds the same messages however the stream is split.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipfork.sip.builder import build_response
from sipfork.sip.edits import forward_request, forward_response
from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.framing import StreamFramer
from sipfork.sip.grammar import quote
from sipfork.sip.headers import CSeq, Via, parse_contacts, parse_name_addrs
from sipfork.sip.message import Message, Request, Response, parse_message
from sipfork.sip.uri import NameAddr, SipUri, TelUri

# Budgets keep the whole of tests/sip well under 20 s; raise them locally to dig deeper.
QUICK = settings(max_examples=300, deadline=None)


def budget(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ---------------------------------------------------------------

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!%*_+`'~-"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=8)
lower_names = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=6)
# Any printable text: letters, punctuation, spaces, non-ASCII (never controls).
free_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
hostnames = st.lists(label, min_size=1, max_size=3).map(".".join)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
hosts = st.one_of(hostnames, ipv4, ipv6)
ports = st.none() | st.integers(0, 65535)
uri_params = st.lists(
    st.tuples(lower_names.map(lambda name: "x" + name), st.none() | free_text), max_size=3
).map(tuple)

sip_uris_without_password = st.builds(
    SipUri,
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.none() | free_text.filter(bool),
    password=st.none(),
    host=hosts,
    port=ports,
    params=uri_params,
    headers=st.lists(st.tuples(free_text.filter(bool), free_text), max_size=2).map(tuple),
)
sip_uris = sip_uris_without_password.flatmap(
    lambda uri: st.just(uri)
    if uri.user is None
    else st.builds(attrs.evolve, st.just(uri), password=st.none() | free_text)
)
tel_uris = st.builds(
    TelUri,
    number=st.from_regex(r"\+?[0-9][0-9.()-]{0,12}", fullmatch=True),
    params=uri_params,
)
uris = st.one_of(sip_uris, sip_uris, tel_uris)

header_param_values = st.one_of(st.none(), tokens, free_text.map(quote))
header_params = st.lists(st.tuples(lower_names.map(lambda n: "p" + n), header_param_values), max_size=3)


@st.composite
def name_addrs(draw: st.DrawFn, tag: bool | None = None) -> NameAddr:
    params = draw(header_params)
    if tag or (tag is None and draw(st.booleans())):
        params.insert(draw(st.integers(0, len(params))), ("tag", draw(tokens)))
    return NameAddr(display=draw(st.none() | free_text), uri=draw(uris), params=tuple(params))


@st.composite
def vias(draw: st.DrawFn) -> Via:
    params: list[tuple[str, str | None]] = [("branch", "z9hG4bK" + draw(tokens))]
    if draw(st.booleans()):
        params.append(("received", draw(ipv4 | ipv6)))
    rport = draw(st.sampled_from(["absent", "flag", "value"]))
    if rport == "flag":
        params.append(("rport", None))
    elif rport == "value":
        params.append(("rport", str(draw(st.integers(1, 65535)))))
    params.extend(draw(st.lists(st.tuples(lower_names.map(lambda n: "x" + n), st.none() | tokens), max_size=2)))
    params = list(draw(st.permutations(params)))
    return Via(
        transport=draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP"])), host=draw(hosts), port=draw(ports),
        params=tuple(params),
    )


@attrs.define(kw_only=True)
class Model:
    """The fields of a message, as a test writes them down."""

    method: str | None  # None for a response
    ruri: SipUri | TelUri | None
    status: int
    reason: str
    vias: list[Via]
    from_: NameAddr
    to: NameAddr
    call_id: str
    cseq: CSeq
    max_forwards: int | None
    routes: list[NameAddr]
    record_routes: list[NameAddr]
    contacts: list[NameAddr]
    extras: list[tuple[str, str]]
    body: bytes
    content_length: bool = True


extra_values = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).map(
    lambda text: text.strip(" ")
).filter(bool)


@st.composite
def models(draw: st.DrawFn, request: bool | None = None, min_vias: int = 1) -> Model:
    is_request = draw(st.booleans()) if request is None else request
    method = draw(st.sampled_from(["INVITE", "REGISTER", "OPTIONS", "BYE", "MESSAGE"]) | tokens)
    return Model(
        method=method if is_request else None,
        ruri=draw(uris) if is_request else None,
        status=draw(st.integers(100, 699)),
        reason=draw(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=15)),
        vias=draw(st.lists(vias(), min_size=min_vias, max_size=3)),
        from_=draw(name_addrs()),
        to=draw(name_addrs()),
        call_id=draw(st.text(TOKEN_CHARS + "@:/<>\"?{}", min_size=1, max_size=20)),
        cseq=CSeq(number=draw(st.integers(0, 2**31 - 1)), method=method if is_request else draw(tokens)),
        max_forwards=draw(st.none() | st.integers(0, 255)),
        routes=draw(st.lists(name_addrs(tag=False), max_size=3)),
        record_routes=draw(st.lists(name_addrs(tag=False), max_size=2)),
        contacts=draw(st.lists(name_addrs(tag=False), max_size=2)),
        extras=draw(st.lists(st.tuples(st.sampled_from(["X-A", "X-B", "x-c"]), extra_values), max_size=3)),
        body=draw(st.binary(max_size=40)),
        content_length=draw(st.booleans()),
    )


# -- serialisation --------------------------------------------------------------

COMPACT = {"via": "v", "from": "f", "to": "t", "call-id": "i", "contact": "m", "content-length": "l"}
LONG = {"via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq", "contact": "Contact",
        "route": "Route", "record-route": "Record-Route", "max-forwards": "Max-Forwards",
        "content-length": "Content-Length"}


def serialise(model: Model, rnd: random.Random | None = None) -> bytes:
    """The model as bytes; ``rnd`` picks a random legal formatting, None the plain one."""

    def name(key: str) -> str:
        if rnd is None or key not in LONG:
            return LONG.get(key, key)
        written = COMPACT[key] if key in COMPACT and rnd.random() < 0.4 else LONG[key]
        return "".join(c.upper() if rnd.random() < 0.5 else c.lower() for c in written)

    def colon() -> str:
        return rnd.choice([": ", ":", " : ", ":\r\n "]) if rnd else ": "

    groups: list[list[str]] = []

    def lists(key: str, values: list[str]) -> None:
        """One line per value, or several values per line (RFC 3261 §7.3.1)."""
        lines: list[str] = []
        i = 0
        while i < len(values):
            take = rnd.randint(1, len(values) - i) if rnd else 1
            sep = rnd.choice([", ", ",", " , ", ",\r\n\t"]) if rnd else ", "
            lines.append(name(key) + colon() + sep.join(values[i : i + take]))
            i += take
        if lines:
            groups.append(lines)

    lists("via", [str(via) for via in model.vias])
    groups.append([name("from") + colon() + str(model.from_)])
    groups.append([name("to") + colon() + str(model.to)])
    groups.append([name("call-id") + colon() + model.call_id])
    groups.append([name("cseq") + colon() + str(model.cseq)])
    if model.max_forwards is not None:
        groups.append([name("max-forwards") + colon() + str(model.max_forwards)])
    lists("route", [str(route) for route in model.routes])
    lists("record-route", [str(route) for route in model.record_routes])
    lists("contact", [str(contact) for contact in model.contacts])
    extras: dict[str, list[str]] = {}
    for key, value in model.extras:  # one group per name: the order within a name matters
        extras.setdefault(key.lower(), []).append(key + colon() + value)
    groups.extend(extras.values())
    if model.content_length:
        groups.append([name("content-length") + colon() + str(len(model.body))])
    lines: list[str] = []
    if rnd is None:
        for group in groups:
            lines.extend(group)
    else:  # interleave the groups, keeping each header's own order
        remaining = [list(group) for group in groups]
        while remaining:
            group = rnd.choice(remaining)
            lines.append(group.pop(0))
            if not group:
                remaining.remove(group)
    if model.method is not None:
        start = f"{model.method} {model.ruri} SIP/2.0"
    else:
        start = f"SIP/2.0 {model.status} {model.reason}"

    def ending() -> str:
        return rnd.choice(["\r\n", "\n"]) if rnd else "\r\n"

    text = "".join(line + ending() for line in [start, *lines]) + ending()
    if rnd is not None and rnd.random() < 0.3:
        text = text.replace("\r\n", "\n")
    trailer = b"junk" if rnd is not None and model.content_length and rnd.random() < 0.3 else b""
    return text.encode("utf-8", "surrogateescape") + model.body + trailer


def fields_of(message: Message) -> dict[str, object]:
    """Everything a model says about a message, read back from a parsed one."""
    extras: dict[str, list[str]] = {}
    for key, value in message.header_items():
        if key.lower().startswith("x-"):
            extras.setdefault(key.lower(), []).append(value)
    start: tuple[object, ...]
    if isinstance(message, Request):
        start = (message.method, message.ruri)
    else:
        assert isinstance(message, Response)
        start = (message.status, message.reason)
    return {
        "start": start,
        "vias": message.vias,
        "from": message.from_,
        "to": message.to,
        "call_id": message.call_id,
        "cseq": message.cseq,
        "max_forwards": message.max_forwards,
        "routes": message.routes,
        "record_routes": parse_name_addrs(message.header_values("record-route")),
        "contacts": message.contacts,
        "extras": extras,
        "body": message.body,
    }


def fields_of_model(model: Model) -> dict[str, object]:
    extras: dict[str, list[str]] = {}
    for key, value in model.extras:
        extras.setdefault(key.lower(), []).append(value)
    return {
        "start": (model.method, model.ruri) if model.method is not None else (model.status, model.reason),
        "vias": model.vias,
        "from": model.from_,
        "to": model.to,
        "call_id": model.call_id,
        "cseq": model.cseq,
        "max_forwards": model.max_forwards,
        "routes": model.routes,
        "record_routes": model.record_routes,
        "contacts": model.contacts,
        "extras": extras,
        "body": model.body,
    }


# -- (a) round trip -----------------------------------------------------------------


@budget(100)
@given(models(), st.randoms(use_true_random=False))
def test_parse_serialise_round_trip(model: Model, rnd: random.Random) -> None:
    assert fields_of(parse_message(serialise(model))) == fields_of_model(model)
    assert fields_of(parse_message(serialise(model, rnd))) == fields_of_model(model)


# -- (b) only RemoteProtocolError ----------------------------------------------------------------


def touch_everything(message: Message) -> None:
    """Read every view of a message, and use it for edits and builds."""
    views: list[Callable[[], object]] = [
        lambda: message.call_id, lambda: message.cseq, lambda: message.vias, lambda: message.top_via,
        lambda: message.from_, lambda: message.to, lambda: message.from_tag, lambda: message.to_tag,
        lambda: message.max_forwards, lambda: message.contacts, lambda: message.routes, lambda: message.body,
        lambda: message.header_items(), lambda: parse_contacts(message),
        lambda: [message.header_values(key.decode()) for key, *_ in message.fields],
    ]
    if isinstance(message, Request):
        request = message
        views += [
            lambda: request.ruri,
            lambda: build_response(request, 400, to_tag="t", received="1.2.3.4", rport=1),
            lambda: forward_request(request, via="SIP/2.0/UDP p;branch=z9hG4bKp", received="1.2.3.4", rport=9),
        ]
    elif isinstance(message, Response):
        response = message
        views.append(lambda: forward_response(response))
    for view in views:
        try:
            view()
        except RemoteProtocolError:
            pass


def parse_or_reject(data: bytes) -> None:
    try:
        message = parse_message(data)
    except RemoteProtocolError as error:
        assert 400 <= error.status <= 599
        request = getattr(error, "request", None)
        if request is not None:
            touch_everything(request)
        return
    touch_everything(message)


@QUICK
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    parse_or_reject(data)


SAMPLE_LINES = [b"INVITE sip:a@h SIP/2.0", b"SIP/2.0 200 OK", b"Via: SIP/2.0/UDP h;branch=z9hG4bK1;rport",
                b"v: SIP/2.0/TCP [::1]:5;received=::1", b"From: \"A\" <sip:a@h>;tag=1", b"t: <tel:+1>",
                b"Call-ID: x", b"CSeq: 1 INVITE", b"Max-Forwards: 7", b"l: 3", b"Route: <sip:r;lr>, <sip:s>",
                b"Contact: *", b"m: <sip:c@h>;expires=0", b" folded", b"", b"x"]


@QUICK
@given(st.lists(st.sampled_from(SAMPLE_LINES), max_size=12), st.sampled_from([b"\r\n", b"\n"]))
def test_line_soup(lines: list[bytes], ending: bytes) -> None:
    parse_or_reject(ending.join(lines) + ending + ending + b"abc")


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(serialise(draw(models()), draw(st.randoms(use_true_random=False))))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "replace", "duplicate", "truncate"]))
        at = draw(st.integers(0, len(data)))
        size = draw(st.integers(0, 12))
        if kind == "delete":
            del data[at : at + size]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=6) | st.sampled_from([b"\r\n", b":", b",", b";", b"<",
                                                                                   b'"', b"\\", b"[", b"%", b"@"]))
        elif kind == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "duplicate":
            data[at:at] = data[at : at + size]
        else:
            del data[at:]
    return bytes(data)


@budget(80)
@given(mutations())
def test_mutated_messages(data: bytes) -> None:
    parse_or_reject(data)


# -- (c) edits == re-serialisation --------------------------------------------------


def with_received(via: Via, received: str | None, rport: int | None) -> Via:
    params = list(via.params)
    for key, value in (("received", received), ("rport", None if rport is None else str(rport))):
        if value is None:
            continue
        for i, (name, _) in enumerate(params):
            if name.lower() == key:
                params[i] = (key, value)
                break
        else:
            params.append((key, value))
    return attrs.evolve(via, params=tuple(params))


@budget(70)
@given(models(request=True), st.data())
def test_forward_request_edits_equal_reserialisation(model: Model, data: st.DataObject) -> None:
    rnd = data.draw(st.randoms(use_true_random=False))
    new_via = data.draw(vias())
    request_uri = data.draw(st.none() | uris)
    max_forwards = data.draw(st.none() | st.integers(0, 255))
    received = data.draw(st.none() | ipv4 | ipv6)
    rport = data.draw(st.none() | st.integers(1, 65535))
    pop = data.draw(st.integers(0, len(model.routes)))
    record_route = data.draw(st.lists(name_addrs(tag=False), max_size=2))
    add = data.draw(st.lists(st.tuples(st.sampled_from(["X-New", "X-Other"]), extra_values), max_size=2))
    drop = data.draw(st.lists(st.sampled_from(["X-A", "x-b", "X-C", "Subject"]), max_size=2, unique=True))

    received_message = parse_message(serialise(model, rnd))
    assert isinstance(received_message, Request)
    cseq = data.draw(st.none() | st.integers(0, 2**31 - 1))
    edited = forward_request(
        received_message, via=str(new_via), request_uri=None if request_uri is None else str(request_uri),
        max_forwards=max_forwards, received=received, rport=rport, pop_routes=pop,
        record_route=[str(r) for r in record_route], add_headers=add, drop_headers=drop, cseq=cseq,
    )

    dropped = {name.lower() for name in drop}
    expected = attrs.evolve(
        model,
        ruri=model.ruri if request_uri is None else request_uri,
        vias=[new_via, with_received(model.vias[0], received, rport), *model.vias[1:]],
        max_forwards=max_forwards if max_forwards is not None else (
            70 if model.max_forwards is None else max(model.max_forwards - 1, 0)),
        routes=model.routes[pop:],
        record_routes=[*record_route, *model.record_routes],
        extras=[(k, v) for k, v in model.extras if k.lower() not in dropped] + add,
        cseq=model.cseq if cseq is None else attrs.evolve(model.cseq, number=cseq),
        content_length=True,
    )
    assert fields_of(parse_message(edited)) == fields_of(parse_message(serialise(expected)))


@budget(40)
@given(models(request=False, min_vias=2), st.randoms(use_true_random=False))
def test_forward_response_edits_equal_reserialisation(model: Model, rnd: random.Random) -> None:
    received_message = parse_message(serialise(model, rnd))
    assert isinstance(received_message, Response)
    edited = forward_response(received_message)
    expected = attrs.evolve(model, vias=model.vias[1:], content_length=True)
    assert fields_of(parse_message(edited)) == fields_of(parse_message(serialise(expected)))


# -- (d) framing ----------------------------------------------------------------------


@budget(35)
@given(
    st.lists(models().map(lambda m: attrs.evolve(m, content_length=True)), min_size=1, max_size=3),
    st.lists(st.sampled_from([b"", b"\r\n\r\n", b"\r\n"]), min_size=3, max_size=3),
    st.lists(st.integers(0, 2000), max_size=8),
)
def test_framer_split_anywhere(batch: list[Model], gaps: list[bytes], cuts: list[int]) -> None:
    messages = [serialise(model) for model in batch]
    stream = b"".join(gap + message for gap, message in zip(gaps, messages))
    points = sorted({min(cut, len(stream)) for cut in cuts} | {0, len(stream)})
    framer = StreamFramer()
    out: list[bytes] = []
    for start, end in zip(points, points[1:]):
        out.extend(framer.feed(stream[start:end]))
    assert out == messages
    assert framer.buffered == 0
    assert [fields_of(parse_message(m)) for m in out] == [fields_of_model(model) for model in batch]


# -- the two header indexers agree ------------------------------------------------------

LINE_PIECES = [b"\r\n", b"\n", b"\r", b"Via: a", b" b", b"\tc", b"l:1", b"X :  y  ", b"bad", b"", b":", b"i:\r\n x"]


@QUICK
@given(st.lists(st.sampled_from(LINE_PIECES), max_size=10), st.integers(0, 3))
def test_fast_and_general_indexing_agree(pieces: list[bytes], start: int) -> None:
    from sipfork.sip import header_index

    data = b"".join(pieces)
    start = min(start, len(data))

    try:
        fields, header_end, body_start, by_key = header_index.index_header_section(data, start)
    except RemoteProtocolError:
        fast: object = "rejected"
    else:
        fast = (fields, header_end, body_start)
        if by_key is not None:  # built in the same pass: the fields grouped by key, in order
            grouped: dict[bytes, tuple[object, ...]] = {}
            for field in fields:
                grouped[field[0]] = (*grouped.get(field[0], ()), field)
            assert by_key == grouped
    try:
        general: object = header_index._index_lines(data, start)
    except RemoteProtocolError:
        general = "rejected"
    assert fast == general
