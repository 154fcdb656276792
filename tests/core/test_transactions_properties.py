"""Invariants of the transaction machines under random events (hypothesis).

Random sequences of responses (random statuses, retransmissions), request
retransmissions, ACKs, CANCELs and timer firings at random times, over UDP
and TCP, for the four machines.  Whatever happens:

- nothing raises but :class:`TransactionError`, and that only for a call the
  TU got wrong (a response the state forbids, an ACK or CANCEL on a
  non-INVITE); events from the network and timers never raise while the
  transaction lives, and a refused call changes nothing;
- nothing is sent after :class:`Terminated`, which comes once, last, with the
  state Terminated and no deadline; every later call raises;
- deadlines never move backwards while the transaction lives;
- a transaction driven on time ends by 64*T1 + T4 after its final response
  (and a client without one by 64*T1 after it started, or after its CANCEL).
"""

from __future__ import annotations

from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

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
)
from sipfork.core.transactions.base import LINGER_GRID
from sipfork.routing.plan import Hop
from sipfork.sip.message import Request, Response, parse_message

T0 = 5000.0
TIMERS = Timers()
# The longest a transaction lingers after its final (the lingering timers
# end on a grid, up to LINGER_GRID after their RFC value).
LIFETIME = 64 * TIMERS.t1 + TIMERS.t4 + LINGER_GRID
SLACK = 1e-6
CALLER = ("192.0.2.10", 40000)
STATUSES = [100, 180, 183, 200, 202, 300, 302, 401, 404, 486, 487, 500, 503, 600, 603, 699]


def request_bytes(method: str, transport: str) -> bytes:
    return (
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport.upper()} 203.0.113.1:5060;branch=z9hG4bKprop\r\n"
        f"Via: SIP/2.0/{transport.upper()} 10.0.0.1:5062;branch=z9hG4bKcaller;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.com>;tag=from1\r\n"
        "To: <sip:bob@example.com>\r\n"
        "Call-ID: prop@example.com\r\n"
        f"CSeq: 3 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@cache
def request(method: str, transport: str) -> Request:
    message = parse_message(request_bytes(method, transport))
    assert isinstance(message, Request)
    return message


@cache
def response(status: int, method: str, tag: str | None) -> Response:
    to = "<sip:bob@example.com>" + (f";tag={tag}" if tag else "")
    message = parse_message(
        (
            f"SIP/2.0 {status} Whatever\r\n"
            "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKprop\r\n"
            "Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKcaller;rport\r\n"
            "From: <sip:alice@example.com>;tag=from1\r\n"
            f"To: {to}\r\n"
            "Call-ID: prop@example.com\r\n"
            f"CSeq: 3 {method}\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(message, Response)
    return message


# A step: how long the clock moves, whether the shell fired the due timers on
# time before the event, and the event.
delays = st.one_of(
    st.sampled_from([0.0, 0.1, TIMERS.t1, 1.0, TIMERS.t2, TIMERS.t4, 32.0]),
    st.floats(min_value=0, max_value=2, allow_nan=False),
    st.floats(min_value=0, max_value=40, allow_nan=False),
)
server_events = st.one_of(
    st.tuples(st.just("respond"), st.sampled_from(STATUSES)),
    st.tuples(st.just("request")),
    st.tuples(st.just("ack")),
    st.tuples(st.just("timer")),
)
client_events = st.one_of(
    st.tuples(st.just("response"), st.sampled_from(STATUSES), st.sampled_from(["a", "b", None])),
    st.tuples(st.just("timer")),
    st.tuples(st.just("cancel")),
)


def steps(events):
    return st.lists(st.tuples(delays, st.booleans(), events), max_size=30)


class Watch:
    """Checks the invariants common to both kinds after every call."""

    def __init__(self, transaction, terminated_state) -> None:
        self.transaction = transaction
        self.terminated_state = terminated_state
        self.last_deadline: float | None = transaction.deadline()
        self.on_time = True
        self.last_retransmission: float | None = None
        # Timer A doubles without a cap; Timers E and G stop at T2.
        self.capped = not (isinstance(transaction, ClientTransaction) and transaction.is_invite)

    @property
    def alive(self) -> bool:
        return self.transaction.state is not self.terminated_state

    def refused(self, call) -> None:
        """A call the transaction must refuse without changing anything."""
        transaction = self.transaction
        before = (transaction.state, transaction.deadline())
        try:
            call()
        except TransactionError:
            pass
        else:
            raise AssertionError(f"{transaction!r} accepted an impossible call")
        assert (transaction.state, transaction.deadline()) == before

    def after(self, out: list, allowed: tuple[type, ...]) -> None:
        transaction = self.transaction
        assert all(isinstance(item, allowed) for item in out), out
        if any(isinstance(item, Terminated) for item in out):
            assert out.count(Terminated()) == 1
            assert isinstance(out[-1], Terminated)
            assert transaction.state is self.terminated_state
            assert transaction.deadline() is None
        else:
            assert self.alive
        if TimedOut() in out:
            assert out[-2:] == [TimedOut(), Terminated()]
        deadline = transaction.deadline()
        if deadline is not None:
            if self.last_deadline is not None:
                assert deadline >= self.last_deadline - SLACK, (self.last_deadline, deadline)
            self.last_deadline = deadline

    def fire_due(self, now: float, allowed: tuple[type, ...]) -> None:
        """What the shell does: handle_timer at each deadline as it passes."""
        transaction = self.transaction
        while self.alive and (deadline := transaction.deadline()) is not None and deadline <= now:
            self.fired(deadline, transaction.handle_timer(deadline), allowed)

    def fired(self, now: float, out: list, allowed: tuple[type, ...]) -> None:
        """After handle_timer: one retransmission at most, and over UDP the
        non-INVITE (E) and response (G) retransmissions at most T2 apart."""
        self.after(out, allowed)
        sends = [item for item in out if isinstance(item, Send)]
        assert len(sends) <= 1
        if sends:
            if self.on_time and self.last_retransmission is not None and self.capped:
                assert now - self.last_retransmission <= TIMERS.t2 + SLACK
            self.last_retransmission = now


def server_respond_is_legal(transaction: ServerTransaction, status: int) -> bool:
    """The TU may respond: before a final; in INVITE Accepted with 2xx; after a
    non-INVITE final with another final (discarded, RFC 3261 §17.2.2)."""
    state = transaction.state
    if state in (ServerState.TRYING, ServerState.PROCEEDING):
        return True
    if transaction.is_invite:
        return state is ServerState.ACCEPTED and 200 <= status < 300
    return state is ServerState.COMPLETED and status >= 200


@settings(max_examples=500, deadline=None)
@given(
    method=st.sampled_from(["INVITE", "OPTIONS", "BYE"]),
    transport=st.sampled_from(["udp", "tcp"]),
    script=steps(server_events),
)
def test_server_transaction_invariants(method, transport, script):
    transaction = ServerTransaction(
        request(method, transport), source=CALLER, transport=transport, now=T0, timers=TIMERS
    )
    watch = Watch(transaction, ServerState.TERMINATED)
    allowed = (Send, TimedOut, Terminated)
    destination = transaction.destination
    now = T0
    final_at: float | None = None
    for delay, on_time, event in script:
        now += delay
        if on_time:
            watch.fire_due(now, allowed)
        else:
            watch.on_time = False
        if watch.on_time and final_at is not None and now > final_at + LIFETIME + SLACK:
            assert not watch.alive
        if not watch.alive:
            for call in (
                lambda: transaction.respond(b"x", 200, now),
                lambda: transaction.receive_request(now),
                lambda: transaction.receive_ack(now),
                lambda: transaction.handle_timer(now),
            ):
                watch.refused(call)
            continue
        kind = event[0]
        if kind == "respond":
            status = event[1]
            if not server_respond_is_legal(transaction, status):
                watch.refused(lambda: transaction.respond(b"x", status, now))
                continue
            was_final = final_at is not None
            data = f"SIP/2.0 {status}".encode()
            out = transaction.respond(data, status, now)
            discarded = was_final and not (transaction.is_invite and status < 300)
            sent = Send(data=data, host=destination[0], port=destination[1], transport=transport)
            assert out[:1] == ([] if discarded else [sent])
            if status >= 200 and final_at is None:
                final_at = now
        elif kind == "request":
            out = transaction.receive_request(now)
            assert len(out) <= 1
        elif kind == "ack":
            if not transaction.is_invite:
                watch.refused(lambda: transaction.receive_ack(now))
                continue
            out = transaction.receive_ack(now)
            assert not any(isinstance(item, Send) for item in out)
        else:
            out = transaction.handle_timer(now)
            if transport == "tcp":
                assert not any(isinstance(item, Send) for item in out)
            watch.fired(now, out, allowed)
            continue
        watch.after(out, allowed)
        for item in out:
            if isinstance(item, Send):
                assert (item.host, item.port, item.transport) == (*destination, transport)
    if watch.on_time and watch.alive and final_at is not None:
        watch.after(transaction.handle_timer(max(now, final_at + LIFETIME + SLACK)), allowed)
        assert not watch.alive
    if final_at is None:
        assert transaction.deadline() is None  # it waits for the TU


@settings(max_examples=500, deadline=None)
@given(
    method=st.sampled_from(["INVITE", "OPTIONS", "BYE"]),
    transport=st.sampled_from(["udp", "tcp"]),
    script=steps(client_events),
)
def test_client_transaction_invariants(method, transport, script):
    data = request_bytes(method, transport)
    hop = Hop(host="198.51.100.7", port=5070, transport=transport)
    transaction = ClientTransaction(data, method=method, hop=hop, now=T0, timers=TIMERS)
    first = Send(data=data, host=hop.host, port=hop.port, transport=transport)
    assert transaction.start() == [first]
    watch = Watch(transaction, ClientState.TERMINATED)
    allowed = (Send, Deliver, TimedOut, Terminated)
    invite = transaction.is_invite
    now = T0
    final_at: float | None = None
    provisional = False
    cancelled_at: float | None = None
    failures_delivered = 0
    for delay, on_time, event in script:
        now += delay
        if on_time:
            watch.fire_due(now, allowed)
        else:
            watch.on_time = False
        end_by = client_end_by(invite, final_at, provisional, cancelled_at)
        if watch.on_time and end_by is not None and now > end_by + SLACK:
            assert not watch.alive
        if not watch.alive:
            for call in (
                lambda: transaction.receive_response(response(200, method, "a"), now),
                lambda: transaction.handle_timer(now),
                lambda: transaction.cancelled(now),
            ):
                watch.refused(call)
            continue
        kind = event[0]
        if kind == "response":
            status, tag = event[1], event[2]
            state_before = transaction.state
            out = transaction.receive_response(response(status, method, tag), now)
            delivered = [item.response.status for item in out if isinstance(item, Deliver)]
            acks = [item for item in out if isinstance(item, Send)]
            if status >= 300 and invite and state_before is not ClientState.ACCEPTED:
                # a non-2xx final: an ACK each time, delivered the first time only
                assert len(acks) == 1
                ack = parse_message(acks[0].data)
                assert isinstance(ack, Request) and ack.method == "ACK"
                assert (acks[0].host, acks[0].port, acks[0].transport) == (hop.host, hop.port, transport)
            else:
                assert acks == []
            failures_delivered += sum(1 for code in delivered if code >= 300)
            if not invite:
                failures_delivered += sum(1 for code in delivered if 200 <= code < 300)
            if status >= 200 and final_at is None:
                final_at = now
            elif status < 200 and final_at is None:
                provisional = True
        elif kind == "cancel":
            if not invite:
                watch.refused(lambda: transaction.cancelled(now))
                continue
            out = transaction.cancelled(now)
            assert out == []
            if final_at is None and cancelled_at is None:
                cancelled_at = now
        else:
            out = transaction.handle_timer(now)
            if transport == "tcp":
                assert not any(isinstance(item, Send) for item in out)
            assert all(item == first for item in out if isinstance(item, Send))
            watch.fired(now, out, allowed)
            continue
        assert failures_delivered <= 1
        watch.after(out, allowed)
    end_by = client_end_by(invite, final_at, provisional, cancelled_at)
    if watch.on_time and watch.alive and end_by is not None:
        watch.after(transaction.handle_timer(max(now, end_by + SLACK)), allowed)
        assert not watch.alive


def client_end_by(
    invite: bool, final_at: float | None, provisional: bool, cancelled_at: float | None
) -> float | None:
    """The latest a client transaction driven on time may live."""
    timeout = 64 * TIMERS.t1
    if not invite:
        return T0 + timeout + TIMERS.t4 + LINGER_GRID  # Timer F, or Timer K after a final before it
    if final_at is not None:
        return final_at + max(timeout, TIMERS.timer_d) + LINGER_GRID  # Timer M or Timer D
    ends = []
    if not provisional:
        ends.append(T0 + timeout)  # Timer B
    if cancelled_at is not None:
        ends.append(cancelled_at + timeout)  # RFC 3261 §9.1
    return min(ends, default=None)
