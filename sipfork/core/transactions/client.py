"""The client transactions: RFC 3261 §17.1.1 (INVITE, with RFC 6026
Accepted) and §17.1.2 (non-INVITE), and the 64*T1 after a CANCEL (§9.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sipfork.core.effects import Send
from sipfork.core.transactions.base import (
    TERMINATED,
    TIMED_OUT,
    Deliver,
    Terminated,
    TimedOut,
    Timers,
    Transaction,
    TransactionError,
    linger_until,
)
from sipfork.core.transactions.states import (
    INVITE_CLIENT,
    NON_INVITE_CLIENT,
    Action,
    ClientState,
    Event,
    status_event,
)
from sipfork.sip.builder import InviteLines, build_ack, invite_lines
from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.message import Request, parse_message

if TYPE_CHECKING:
    from sipfork.routing.plan import Hop
    from sipfork.sip.message import Response


class ClientTransaction(Transaction):
    """RFC 3261 §17.1.1 (INVITE, with RFC 6026 Accepted) and §17.1.2 (non-INVITE).

    ``data`` is the request exactly as it goes on the wire (the proxy built
    it); the transaction sends it to ``hop`` and retransmits it over UDP.
    It is parsed only to build the ACK for a non-2xx final response.
    """

    __slots__ = (
        "data",
        "method",
        "hop",
        "_request",
        "_lines",
        "_send",
        "_ack",
        "_started",
        "_interval",
        "_timeout",
        "_linger",
    )

    def __init__(
        self,
        data: bytes,
        *,
        method: str,
        hop: Hop,
        now: float,
        timers: Timers = Timers(),
        lines: InviteLines | None = None,
        sent: Send | None = None,
    ) -> None:
        """``lines``: what a CANCEL or ACK copies from ``data``, when the
        caller knows it (else ``data`` is parsed the first time it is needed).
        ``sent``: the request's first send, when it already went out (the
        transaction is then started and retransmits that Send)."""
        if method == "ACK":
            raise TransactionError("an ACK has no client transaction (RFC 3261 §17)")
        self.data = data
        self.method = method
        self.hop = hop
        self.timers = timers
        self.is_invite = method == "INVITE"
        self.reliable = hop.transport == "tcp"
        self._request: Request | None = None
        self._lines = lines
        self._send = sent if sent is not None else Send(data=data, host=hop.host, port=hop.port,
                                                        transport=hop.transport, alternate=hop.alternate)
        self._ack: Send | None = None
        self._started = sent is not None
        self._interval = timers.t1
        self._timeout = 64 * timers.t1
        self._timers = {}
        if self.is_invite:
            self.state: ClientState = ClientState.CALLING
            self._table = INVITE_CLIENT
            self._linger = 0.0 if self.reliable else timers.timer_d
            retransmit, give_up = Event.TIMER_A, Event.TIMER_B
        else:
            self.state = ClientState.TRYING
            self._table = NON_INVITE_CLIENT
            self._linger = 0.0 if self.reliable else timers.t4
            retransmit, give_up = Event.TIMER_E, Event.TIMER_F
        if not self.reliable:
            self._timers[retransmit] = now + self._interval
        self._timers[give_up] = now + self._timeout

    @property
    def request(self) -> Request:
        """The request, parsed on first use (for building the ACK)."""
        if self._request is None:
            try:
                message = parse_message(self.data)
            except RemoteProtocolError as exc:  # our own bytes: our bug
                raise TransactionError(f"the request we sent does not parse: {exc}") from exc
            if not isinstance(message, Request):
                raise TransactionError("the data of a client transaction is not a request")
            self._request = message
        return self._request

    @property
    def invite_lines(self) -> InviteLines:
        """What a CANCEL or ACK copies from the request (RFC 3261 §9.1, §17.1.1.3)."""
        if self._lines is None:
            self._lines = invite_lines(self.request)
        return self._lines

    def start(self) -> list[Send]:
        """The first send; call once, at the construction time ``now``."""
        if self._started:
            self._impossible("start (already started)")
        self._started = True
        return [self._send]

    def receive_response(
        self, response: Response, now: float
    ) -> list[Send | Deliver | Terminated]:
        """A response matched this transaction (§17.1.1.2, §17.1.2.2)."""
        out: list = []
        self._event(status_event(response.status), now, out, response)
        return out

    def cancelled(self, now: float) -> list[Send | TimedOut | Terminated]:
        """The proxy sent a CANCEL for this INVITE (RFC 3261 §9.1).

        If no final response arrives within 64*T1, the transaction times out
        (:class:`TimedOut`, then :class:`Terminated` from ``handle_timer``),
        even in Proceeding where no other timer would end it.  The proxy must
        not send the CANCEL before a provisional response came (state
        Proceeding, §9.1); this only arms the timer.  Returns ``[]``.
        """
        out: list = []
        self._event(Event.CANCEL, now, out)
        return out

    def _event(
        self, event: Event, now: float, out: list, response: Response | None = None
    ) -> None:
        next_state, action = self._transition(event, response.status if response else 0)
        if action is Action.DELIVER:
            out.append(Deliver(response=response))
        elif action is Action.RETRANSMIT_REQUEST:
            send = self._send
            if not (out and out[-1] is send):
                out.append(send)
            if event is Event.TIMER_A:
                self._interval *= 2
            elif self.state is ClientState.PROCEEDING:
                self._interval = self.timers.t2
            else:
                self._interval = min(2 * self._interval, self.timers.t2)
            self._timers[event] = now + self._interval
        elif action is Action.ACK_AND_DELIVER:
            self._ack = self._build_ack(response)
            out.append(self._ack)
            out.append(Deliver(response=response))
        elif action is Action.RESEND_ACK:
            if self._ack is not None:
                out.append(self._ack)
        elif action is Action.ARM_CANCEL_TIMER:
            if Event.TIMER_CANCEL not in self._timers:
                self._timers[Event.TIMER_CANCEL] = now + self._timeout
        elif action is Action.TIME_OUT:
            out.append(TIMED_OUT)
        if next_state is not self.state:
            self._enter(next_state, now, out)

    def _build_ack(self, response: Response | None) -> Send:
        hop = self.hop
        data = build_ack(self.invite_lines, response)
        return Send(data=data, host=hop.host, port=hop.port, transport=hop.transport, alternate=hop.alternate)

    def _enter(self, state: ClientState, now: float, out: list) -> None:
        """Move to ``state`` and arm its timers.

        Entering Proceeding keeps the retransmission timer E and Timer F
        (§17.1.2.2) and the CANCEL timer; every other change stops them all.
        """
        self.state = state
        timers = self._timers
        if state is ClientState.PROCEEDING:
            timers.pop(Event.TIMER_A, None)
            timers.pop(Event.TIMER_B, None)
            return
        timers.clear()
        if state is ClientState.COMPLETED:
            linger = Event.TIMER_D if self.is_invite else Event.TIMER_K
            if self._linger:
                timers[linger] = linger_until(now + self._linger)
            else:
                self._event(linger, now, out)
        elif state is ClientState.ACCEPTED:
            timers[Event.TIMER_M] = linger_until(now + self._timeout)
        elif state is ClientState.TERMINATED:
            out.append(TERMINATED)

    def __repr__(self) -> str:
        hop = self.hop
        return (
            f"<ClientTransaction {self.method} {self.state.name}"
            f" {hop.transport}:{hop.host}:{hop.port}>"
        )
