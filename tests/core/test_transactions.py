"""RFC 3261 §17 transactions, with a fake clock stepped by hand.

Every timer (A to M) over UDP and TCP, retransmission absorption, the ACK for
a non-2xx final, RFC 6026 Accepted, where responses go (§18.2.2, RFC 3581),
and impossible events.
"""

from __future__ import annotations

import pytest

from sipfork.core.effects import Send
from sipfork.core.transactions import (
    ClientState,
    ClientTransaction,
    Deliver,
    ServerState,
    ServerTransaction,
    Terminated,
    TimedOut,
    Timers,
    TransactionError,
    response_destination,
)
from sipfork.routing.plan import Hop
from sipfork.sip.headers import parse_via
from sipfork.sip.message import Request, Response, parse_message

T0 = 1000.0  # the fake clock's start: any wall-clock time
CALLER = ("192.0.2.10", 40000)  # where the caller's request came from
CALLER_VIA = "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKcaller"
PROXY_VIA = "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKproxy1"
UDP_HOP = Hop(host="198.51.100.7", port=5070, transport="udp")
TCP_HOP = Hop(host="198.51.100.7", port=5070, transport="tcp")


# -- messages -----------------------------------------------------------------


def request_bytes(method: str = "INVITE", vias: tuple[str, ...] = (CALLER_VIA,)) -> bytes:
    lines = [f"{method} sip:bob@example.com SIP/2.0"]
    lines += [f"Via: {via}" for via in vias]
    lines += [
        "Max-Forwards: 70",
        "From: Alice <sip:alice@example.com>;tag=from1",
        "To: Bob <sip:bob@example.com>",
        "Call-ID: call-1@example.com",
        f"CSeq: 7 {method}",
        "Contact: <sip:alice@10.0.0.1:5062>",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def request(method: str = "INVITE", via: str = CALLER_VIA) -> Request:
    message = parse_message(request_bytes(method, (via,)))
    assert isinstance(message, Request)
    return message


def response(
    status: int,
    method: str = "INVITE",
    *,
    to_tag: str | None = "callee1",
    vias: tuple[str, ...] = (PROXY_VIA, CALLER_VIA),
) -> Response:
    to = "Bob <sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    lines = [f"SIP/2.0 {status} Whatever"]
    lines += [f"Via: {via}" for via in vias]
    lines += [
        "From: Alice <sip:alice@example.com>;tag=from1",
        f"To: {to}",
        "Call-ID: call-1@example.com",
        f"CSeq: 7 {method}",
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Response)
    return message


def server(method: str = "INVITE", transport: str = "udp", via: str = CALLER_VIA) -> ServerTransaction:
    return ServerTransaction(request(method, via), source=CALLER, transport=transport, now=T0)


def client(method: str = "INVITE", hop: Hop = UDP_HOP) -> ClientTransaction:
    data = request_bytes(method, (PROXY_VIA, CALLER_VIA))
    transaction = ClientTransaction(data, method=method, hop=hop, now=T0)
    assert transaction.start() == [send_request(method, hop)]
    return transaction


def send_request(method: str, hop: Hop) -> Send:
    data = request_bytes(method, (PROXY_VIA, CALLER_VIA))
    return Send(data=data, host=hop.host, port=hop.port, transport=hop.transport)


def reply(data: bytes, transport: str = "udp") -> Send:
    """A response sent to the caller (its Via has no rport: sent-by port)."""
    return Send(data=data, host=CALLER[0], port=5062, transport=transport)


def fire_all(transaction, until: float) -> list[tuple[float, list]]:
    """Step the clock from deadline to deadline up to ``until``; what each firing gave."""
    fired = []
    while (deadline := transaction.deadline()) is not None and deadline <= until:
        fired.append((deadline - T0, transaction.handle_timer(deadline)))
    return fired


# -- Timers -------------------------------------------------------------------


def test_timer_defaults_are_rfc_3261_table_4():
    assert Timers() == Timers(t1=0.5, t2=4.0, t4=5.0, timer_d=32.0)


@pytest.mark.parametrize("name", ["t1", "t2", "t4", "timer_d"])
def test_timers_must_be_positive(name):
    with pytest.raises(ValueError, match=name):
        Timers(**{name: 0})


# -- where responses go (RFC 3261 §18.2.2, RFC 3581 §4) -----------------------


@pytest.mark.parametrize(
    ("via", "transport", "expected"),
    [
        # rport asked for: back to the source address and port (NAT)
        ("SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa;rport", "udp", ("192.0.2.10", 40000)),
        ("SIP/2.0/UDP 10.0.0.1;rport;branch=z9hG4bKa", "udp", ("192.0.2.10", 40000)),
        # no rport: the source host (what received= would say), the sent-by port
        ("SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa", "udp", ("192.0.2.10", 5062)),
        ("SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKa", "udp", ("192.0.2.10", 5062)),
        ("SIP/2.0/UDP phone.example.com;branch=z9hG4bKa", "udp", ("192.0.2.10", 5060)),
        # an explicit received= wins over the source host
        ("SIP/2.0/UDP 10.0.0.1:5062;received=198.51.100.3;branch=z9hG4bKa", "udp", ("198.51.100.3", 5062)),
        # TCP: back over the connection, whatever the Via says
        ("SIP/2.0/TCP 10.0.0.1:5062;branch=z9hG4bKa", "tcp", ("192.0.2.10", 40000)),
        ("SIP/2.0/TCP 10.0.0.1;branch=z9hG4bKa;rport", "tcp", ("192.0.2.10", 40000)),
    ],
)
def test_response_destination(via, transport, expected):
    assert response_destination(parse_via(via), CALLER, transport) == expected


def test_response_destination_ipv6_source():
    via = parse_via("SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKa")
    assert response_destination(via, ("2001:db8::1", 33000), "udp") == ("2001:db8::1", 5070)


def test_server_sends_responses_per_rport():
    transaction = server(via="SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa;rport")
    assert transaction.destination == CALLER
    assert transaction.respond(b"100", 100, T0) == [
        Send(data=b"100", host="192.0.2.10", port=40000, transport="udp")
    ]


def test_server_over_tcp_answers_on_the_connection():
    transaction = server(transport="tcp", via="SIP/2.0/TCP 10.0.0.1:5062;branch=z9hG4bKa")
    assert transaction.respond(b"100", 100, T0) == [
        Send(data=b"100", host="192.0.2.10", port=40000, transport="tcp")
    ]


# -- INVITE server transaction (RFC 3261 §17.2.1, RFC 6026 §7.1) -------------


def test_invite_server_starts_in_proceeding_without_timers():
    transaction = server()
    assert transaction.is_invite
    assert transaction.state is ServerState.PROCEEDING
    assert transaction.deadline() is None
    assert transaction.receive_request(T0 + 0.1) == []  # nothing to resend yet


def test_invite_server_resends_the_last_provisional():
    transaction = server()
    assert transaction.respond(b"100 Trying", 100, T0) == [reply(b"100 Trying")]
    assert transaction.respond(b"180 Ringing", 180, T0 + 1) == [reply(b"180 Ringing")]
    assert transaction.state is ServerState.PROCEEDING
    assert transaction.receive_request(T0 + 2) == [reply(b"180 Ringing")]
    assert transaction.deadline() is None


def test_invite_server_timer_g_doubles_to_t2_then_timer_h_times_out():
    transaction = server()
    transaction.respond(b"100", 100, T0)
    assert transaction.respond(b"486", 486, T0) == [reply(b"486")]
    assert transaction.state is ServerState.COMPLETED
    fired = fire_all(transaction, T0 + 100)
    # Timer G: T1, then doubling (1, 2) and capped at T2 = 4; Timer H at 64*T1.
    times = [when for when, _ in fired]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5, 32.0]
    assert all(out == [reply(b"486")] for _, out in fired[:-1])
    assert fired[-1][1] == [TimedOut(), Terminated()]
    assert transaction.state is ServerState.TERMINATED
    assert transaction.deadline() is None


def test_invite_server_completed_resends_final_on_request_retransmission():
    transaction = server()
    transaction.respond(b"404", 404, T0)
    assert transaction.receive_request(T0 + 0.2) == [reply(b"404")]
    assert transaction.deadline() == T0 + 0.5  # Timer G untouched


def test_invite_server_ack_confirms_then_timer_i_absorbs():
    transaction = server()
    transaction.respond(b"486", 486, T0)
    transaction.handle_timer(T0 + 0.5)
    assert transaction.receive_ack(T0 + 1) == []
    assert transaction.state is ServerState.CONFIRMED
    assert transaction.deadline() == T0 + 1 + 5.0  # Timer I = T4; G and H stopped
    assert transaction.receive_ack(T0 + 2) == []  # ACK retransmission absorbed
    assert transaction.receive_request(T0 + 3) == []  # INVITE retransmission absorbed
    assert transaction.handle_timer(T0 + 5.9) == []
    assert transaction.handle_timer(T0 + 6) == [Terminated()]
    assert transaction.state is ServerState.TERMINATED


def test_invite_server_over_tcp_has_no_timer_g_and_zero_timer_i():
    transaction = server(transport="tcp")
    assert transaction.respond(b"486", 486, T0) == [
        Send(data=b"486", host=CALLER[0], port=CALLER[1], transport="tcp")
    ]
    assert transaction.deadline() == T0 + 32.0  # Timer H only
    assert transaction.receive_ack(T0 + 1) == [Terminated()]
    assert transaction.state is ServerState.TERMINATED


def test_invite_server_over_tcp_timer_h():
    transaction = server(transport="tcp")
    transaction.respond(b"486", 486, T0)
    assert transaction.handle_timer(T0 + 31.9) == []
    assert transaction.handle_timer(T0 + 32) == [TimedOut(), Terminated()]


def test_invite_server_2xx_moves_to_accepted_with_timer_l():
    transaction = server()
    transaction.respond(b"180", 180, T0)
    assert transaction.respond(b"200 a", 200, T0 + 2) == [reply(b"200 a")]
    assert transaction.state is ServerState.ACCEPTED
    assert transaction.deadline() == T0 + 2 + 32.0  # Timer L = 64*T1
    # every later 2xx (retransmitted, or from another fork) is sent too
    assert transaction.respond(b"200 b", 200, T0 + 3) == [reply(b"200 b")]
    assert transaction.deadline() == T0 + 34.0  # not restarted
    assert transaction.receive_request(T0 + 4) == []  # INVITE retransmissions absorbed
    assert transaction.receive_ack(T0 + 5) == []  # not ours: the proxy forwards it
    assert transaction.state is ServerState.ACCEPTED
    assert transaction.handle_timer(T0 + 33.9) == []
    assert transaction.handle_timer(T0 + 34) == [Terminated()]


def test_invite_server_timer_l_is_64_t1_over_tcp_too():
    transaction = server(transport="tcp")
    transaction.respond(b"200", 200, T0)
    assert transaction.deadline() == T0 + 32.0


@pytest.mark.parametrize(
    ("first", "then"),
    [(486, 200), (486, 180), (486, 603), (200, 486), (200, 180)],
)
def test_invite_server_no_other_response_after_a_final(first, then):
    transaction = server()
    transaction.respond(b"final", first, T0)
    with pytest.raises(TransactionError, match=rf"in state (COMPLETED|ACCEPTED) on {then} "):
        transaction.respond(b"again", then, T0 + 1)


def test_invite_server_stray_ack_in_proceeding_is_absorbed():
    transaction = server()
    transaction.respond(b"180", 180, T0)
    assert transaction.receive_ack(T0 + 1) == []
    assert transaction.state is ServerState.PROCEEDING


# -- non-INVITE server transaction (RFC 3261 §17.2.2) -------------------------


def test_non_invite_server_trying_absorbs_retransmissions():
    transaction = server("OPTIONS")
    assert not transaction.is_invite
    assert transaction.state is ServerState.TRYING
    assert transaction.receive_request(T0 + 0.5) == []
    assert transaction.deadline() is None


def test_non_invite_server_proceeding_resends_provisional():
    transaction = server("REGISTER")
    assert transaction.respond(b"100", 100, T0) == [reply(b"100")]
    assert transaction.state is ServerState.PROCEEDING
    assert transaction.receive_request(T0 + 0.5) == [reply(b"100")]


@pytest.mark.parametrize("status", [200, 202, 302, 401, 404, 500, 603])
def test_non_invite_server_final_timer_j(status):
    transaction = server("BYE")
    assert transaction.respond(b"final", status, T0) == [reply(b"final")]
    assert transaction.state is ServerState.COMPLETED
    assert transaction.deadline() == T0 + 32.0  # Timer J = 64*T1 over UDP
    assert transaction.receive_request(T0 + 1) == [reply(b"final")]
    assert transaction.respond(b"other", 500, T0 + 2) == []  # §17.2.2: discarded
    assert transaction.handle_timer(T0 + 31.9) == []
    assert transaction.handle_timer(T0 + 32) == [Terminated()]
    assert transaction.state is ServerState.TERMINATED


def test_non_invite_server_over_tcp_timer_j_is_zero():
    transaction = server("BYE", transport="tcp")
    assert transaction.respond(b"200", 200, T0) == [
        Send(data=b"200", host=CALLER[0], port=CALLER[1], transport="tcp"),
        Terminated(),
    ]
    assert transaction.state is ServerState.TERMINATED
    assert transaction.deadline() is None


def test_non_invite_server_rejects_ack_and_late_provisional():
    transaction = server("OPTIONS")
    with pytest.raises(TransactionError, match="in state TRYING on ACK"):
        transaction.receive_ack(T0)
    transaction.respond(b"200", 200, T0)
    with pytest.raises(TransactionError, match="in state COMPLETED on 180 "):
        transaction.respond(b"180", 180, T0)


def test_server_rejects_ack_request_and_bad_status():
    with pytest.raises(TransactionError):
        server("ACK")
    with pytest.raises(TransactionError, match="not a SIP status"):
        server().respond(b"x", 99, T0)
    with pytest.raises(TransactionError, match="not a SIP status"):
        server().respond(b"x", 700, T0)


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS"])
def test_server_every_event_after_terminated_is_impossible(method):
    transaction = server(method, transport="tcp")
    transaction.respond(b"500", 500, T0)
    if method == "INVITE":
        transaction.receive_ack(T0)
    assert transaction.state is ServerState.TERMINATED
    for call in (
        lambda: transaction.respond(b"200", 200, T0),
        lambda: transaction.receive_request(T0),
        lambda: transaction.receive_ack(T0),
        lambda: transaction.handle_timer(T0 + 100),
    ):
        with pytest.raises(TransactionError, match="in state TERMINATED"):
            call()


# -- INVITE client transaction (RFC 3261 §17.1.1, RFC 6026 §7.2) -------------


def test_invite_client_timer_a_doubles_without_cap_until_timer_b():
    transaction = client()
    assert transaction.is_invite
    assert transaction.state is ClientState.CALLING
    fired = fire_all(transaction, T0 + 100)
    assert [when for when, _ in fired] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 32.0]
    assert all(out == [send_request("INVITE", UDP_HOP)] for _, out in fired[:-1])
    assert fired[-1][1] == [TimedOut(), Terminated()]
    assert transaction.state is ClientState.TERMINATED


def test_invite_client_timer_a_scales_with_t1():
    data = request_bytes()
    transaction = ClientTransaction(data, method="INVITE", hop=UDP_HOP, now=T0, timers=Timers(t1=0.1))
    transaction.start()
    times = [when for when, _ in fire_all(transaction, T0 + 100)]
    assert times == pytest.approx([0.1, 0.3, 0.7, 1.5, 3.1, 6.3, 6.4])


def test_invite_client_late_timer_sends_one_copy_and_keeps_the_schedule():
    transaction = client()
    assert transaction.handle_timer(T0 + 10) == [send_request("INVITE", UDP_HOP)]
    assert transaction.deadline() == T0 + 15.5


def test_invite_client_over_tcp_has_no_timer_a():
    transaction = client(hop=TCP_HOP)
    assert transaction.deadline() == T0 + 32.0  # Timer B only
    assert transaction.handle_timer(T0 + 31.9) == []
    assert transaction.handle_timer(T0 + 32) == [TimedOut(), Terminated()]


def test_invite_client_provisional_stops_timers_a_and_b():
    transaction = client()
    ringing = response(180)
    assert transaction.receive_response(ringing, T0 + 0.2) == [Deliver(response=ringing)]
    assert transaction.state is ClientState.PROCEEDING
    assert transaction.deadline() is None  # Timer C is the proxy's
    again = response(183)
    assert transaction.receive_response(again, T0 + 1) == [Deliver(response=again)]


def test_invite_client_2xx_accepted_delivers_every_2xx_until_timer_m():
    transaction = client()
    transaction.receive_response(response(180), T0 + 0.2)
    first = response(200, to_tag="fork1")
    assert transaction.receive_response(first, T0 + 1) == [Deliver(response=first)]
    assert transaction.state is ClientState.ACCEPTED
    assert transaction.deadline() == T0 + 1 + 32.0  # Timer M = 64*T1
    second = response(200, to_tag="fork2")
    assert transaction.receive_response(second, T0 + 2) == [Deliver(response=second)]
    assert transaction.receive_response(first, T0 + 3) == [Deliver(response=first)]
    assert transaction.receive_response(response(180), T0 + 4) == []
    assert transaction.receive_response(response(486), T0 + 5) == []
    assert transaction.deadline() == T0 + 33.0
    assert transaction.handle_timer(T0 + 33) == [Terminated()]


def test_invite_client_timer_m_over_tcp():
    transaction = client(hop=TCP_HOP)
    transaction.receive_response(response(200), T0 + 1)
    assert transaction.deadline() == T0 + 33.0


def test_invite_client_non_2xx_sends_ack_and_timer_d_absorbs():
    transaction = client()
    transaction.receive_response(response(180), T0 + 0.2)
    busy = response(486, to_tag="busy1")
    out = transaction.receive_response(busy, T0 + 2)
    assert len(out) == 2
    ack, deliver = out
    assert deliver == Deliver(response=busy)
    assert isinstance(ack, Send)
    assert (ack.host, ack.port, ack.transport) == (UDP_HOP.host, UDP_HOP.port, "udp")
    assert transaction.state is ClientState.COMPLETED
    assert transaction.deadline() == T0 + 2 + 32.0  # Timer D
    # the retransmitted final: the same ACK again, no second delivery
    assert transaction.receive_response(busy, T0 + 3) == [ack]
    assert transaction.receive_response(response(180), T0 + 4) == []
    assert transaction.handle_timer(T0 + 33.9) == []
    assert transaction.handle_timer(T0 + 34) == [Terminated()]


def test_invite_client_ack_carries_the_response_to_tag_and_our_top_via():
    transaction = client()
    busy = response(486, to_tag="busy1")
    ack_send = transaction.receive_response(busy, T0 + 2)[0]
    ack = parse_message(ack_send.data)
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert ack.uri == "sip:bob@example.com"
    assert ack.to_tag == "busy1"
    assert ack.from_tag == "from1"
    assert ack.call_id == "call-1@example.com"
    assert (ack.cseq.number, ack.cseq.method) == (7, "ACK")
    assert [str(via) for via in ack.vias] == [PROXY_VIA]  # the top Via only, same branch


def test_invite_client_non_2xx_over_tcp_terminates_at_once():
    transaction = client(hop=TCP_HOP)
    busy = response(603)
    ack, deliver, terminated = transaction.receive_response(busy, T0 + 1)
    assert isinstance(ack, Send) and ack.transport == "tcp"
    assert deliver == Deliver(response=busy)
    assert terminated == Terminated()
    assert transaction.state is ClientState.TERMINATED


def test_invite_client_2xx_after_non_2xx_is_still_delivered():
    transaction = client()
    transaction.receive_response(response(486), T0 + 1)
    late = response(200, to_tag="late")
    assert transaction.receive_response(late, T0 + 2) == [Deliver(response=late)]
    assert transaction.state is ClientState.COMPLETED


def test_invite_client_cancelled_gives_up_after_64_t1_in_proceeding():
    transaction = client()
    transaction.receive_response(response(180), T0 + 1)
    assert transaction.cancelled(T0 + 10) == []
    assert transaction.deadline() == T0 + 42.0
    assert transaction.cancelled(T0 + 11) == []  # a second CANCEL does not restart it
    assert transaction.deadline() == T0 + 42.0
    assert transaction.handle_timer(T0 + 42) == [TimedOut(), Terminated()]


def test_invite_client_cancelled_in_calling_survives_the_provisional():
    transaction = client()
    transaction.cancelled(T0 + 0.1)
    transaction.receive_response(response(180), T0 + 0.2)
    assert transaction.deadline() == T0 + 32.1


def test_invite_client_cancel_then_487_completes():
    transaction = client()
    transaction.receive_response(response(180), T0 + 1)
    transaction.cancelled(T0 + 2)
    terminated = response(487)
    assert transaction.receive_response(terminated, T0 + 3)[1:] == [Deliver(response=terminated)]
    assert transaction.deadline() == T0 + 35.0  # Timer D, the CANCEL timer stopped
    assert transaction.cancelled(T0 + 4) == []  # crossed: harmless


# -- non-INVITE client transaction (RFC 3261 §17.1.2) -------------------------


def test_non_invite_client_timer_e_capped_at_t2_until_timer_f():
    transaction = client("OPTIONS")
    assert transaction.state is ClientState.TRYING
    fired = fire_all(transaction, T0 + 100)
    times = [when for when, _ in fired]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5, 32.0]
    assert all(out == [send_request("OPTIONS", UDP_HOP)] for _, out in fired[:-1])
    assert fired[-1][1] == [TimedOut(), Terminated()]


def test_non_invite_client_timer_e_is_t2_once_proceeding():
    transaction = client("REGISTER")
    trying = response(100, "REGISTER", to_tag=None)
    assert transaction.receive_response(trying, T0 + 0.2) == [Deliver(response=trying)]
    assert transaction.state is ClientState.PROCEEDING
    assert transaction.deadline() == T0 + 0.5  # Timer E keeps running
    fired = fire_all(transaction, T0 + 100)
    assert [when for when, _ in fired] == [0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.0]
    assert fired[-1][1] == [TimedOut(), Terminated()]


def test_non_invite_client_over_tcp_has_no_timer_e():
    transaction = client("BYE", hop=TCP_HOP)
    assert transaction.deadline() == T0 + 32.0
    assert transaction.handle_timer(T0 + 32) == [TimedOut(), Terminated()]


@pytest.mark.parametrize("status", [200, 401, 404, 503])
def test_non_invite_client_final_timer_k_absorbs_retransmissions(status):
    transaction = client("BYE")
    transaction.handle_timer(T0 + 0.5)
    final = response(status, "BYE")
    assert transaction.receive_response(final, T0 + 1) == [Deliver(response=final)]
    assert transaction.state is ClientState.COMPLETED
    assert transaction.deadline() == T0 + 6.0  # Timer K = T4; E and F stopped
    assert transaction.receive_response(final, T0 + 2) == []
    assert transaction.receive_response(response(100, "BYE"), T0 + 3) == []
    assert transaction.handle_timer(T0 + 6) == [Terminated()]


def test_non_invite_client_over_tcp_timer_k_is_zero():
    transaction = client("BYE", hop=TCP_HOP)
    final = response(200, "BYE")
    assert transaction.receive_response(final, T0 + 1) == [Deliver(response=final), Terminated()]
    assert transaction.state is ClientState.TERMINATED


# -- impossible client events -------------------------------------------------


def test_client_rejects_ack_double_start_and_cancelling_non_invite():
    with pytest.raises(TransactionError):
        ClientTransaction(request_bytes("ACK"), method="ACK", hop=UDP_HOP, now=T0)
    transaction = client()
    with pytest.raises(TransactionError, match="in state CALLING on start"):
        transaction.start()
    with pytest.raises(TransactionError, match="in state TRYING on CANCEL"):
        client("OPTIONS").cancelled(T0)


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS"])
def test_client_every_event_after_terminated_is_impossible(method):
    transaction = client(method)
    fire_all(transaction, T0 + 100)
    assert transaction.state is ClientState.TERMINATED
    for call in (
        lambda: transaction.receive_response(response(200, method), T0 + 101),
        lambda: transaction.handle_timer(T0 + 101),
        lambda: transaction.cancelled(T0 + 101),
    ):
        with pytest.raises(TransactionError, match="in state TERMINATED"):
            call()
