"""The server transactions: RFC 3261 §17.2.1 (INVITE, with RFC 6026
Accepted) and §17.2.2 (non-INVITE), and where responses go (§18.2.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sipfork.core.effects import Send
from sipfork.core.transactions.base import (
    TERMINATED,
    TIMED_OUT,
    Terminated,
    Timers,
    Transaction,
    TransactionError,
    linger_until,
)
from sipfork.core.transactions.states import (
    INVITE_SERVER,
    NON_INVITE_SERVER,
    Action,
    Event,
    ServerState,
    status_event,
)

if TYPE_CHECKING:
    from sipfork.sip.headers import Via
    from sipfork.sip.message import Request

DEFAULT_PORT = 5060  # RFC 3261 §18.2.2: the sent-by port when the Via has none


def response_destination(via: Via, source: tuple[str, int], transport: str) -> tuple[str, int]:
    """Where the responses to a request go (RFC 3261 §18.2.2, RFC 3581 §4).

    Over TCP, back over the connection the request came on (its source).
    Over UDP, to the source address and port when the top Via asked for
    rport; else to the Via's ``received`` (the source host when absent: that
    is what ``received`` would say) and the Via's sent-by port.
    """
    if transport == "tcp" or via.has_rport:
        return source
    return (via.received or source[0], via.port or DEFAULT_PORT)


class ServerTransaction(Transaction):
    """RFC 3261 §17.2.1 (INVITE, with RFC 6026 Accepted) and §17.2.2 (non-INVITE).

    The proxy (the TU) builds every response, including the 100 Trying, and
    passes its bytes to :meth:`respond`; the transaction sends it, remembers
    it for retransmission and moves on.  An INVITE server transaction starts
    in Proceeding, a non-INVITE one in Trying.
    """

    __slots__ = (
        "request",
        "source",
        "transport",
        "destination",
        "_last_response",
        "_interval_g",
        "_timeout",
        "_linger_i",
        "_linger_j",
    )

    def __init__(
        self,
        request: Request,
        *,
        source: tuple[str, int],
        transport: str,
        now: float,
        timers: Timers = Timers(),
    ) -> None:
        method = request.method
        if method == "ACK":
            raise TransactionError("an ACK has no server transaction (RFC 3261 §17)")
        self.request = request
        self.source = source
        self.transport = transport
        self.timers = timers
        self.is_invite = method == "INVITE"
        self.reliable = transport == "tcp"
        self.destination = response_destination(request.top_via, source, transport)
        if self.is_invite:
            self.state: ServerState = ServerState.PROCEEDING
            self._table = INVITE_SERVER
        else:
            self.state = ServerState.TRYING
            self._table = NON_INVITE_SERVER
        self._timers = {}
        self._last_response: Send | None = None
        self._interval_g = timers.t1
        self._timeout = 64 * timers.t1
        self._linger_i = 0.0 if self.reliable else timers.t4
        self._linger_j = 0.0 if self.reliable else self._timeout

    @property
    def answered(self) -> bool:
        """Whether any response, provisional or final, has been sent."""
        return self._last_response is not None

    def respond(self, data: bytes, status: int, now: float) -> list[Send | Terminated]:
        """Send a response the TU built (§17.2.1, §17.2.2).

        A non-INVITE final over TCP terminates at once (Timer J is zero), so
        the list may end with :class:`Terminated`.  A final response after
        the non-INVITE transaction completed is discarded (§17.2.2); after
        an INVITE's final only more 2xx may follow (RFC 6026).
        """
        if not 100 <= status <= 699:
            raise TransactionError(f"status {status} is not a SIP status code")
        next_state, action = self._transition(status_event(status), status)
        out: list = []
        if action is Action.SEND_RESPONSE:
            host, port = self.destination
            send = Send(data=data, host=host, port=port, transport=self.transport)
            self._last_response = send
            out.append(send)
            if status >= 200 and not self.is_invite:
                self.request = None  # type: ignore[assignment]  # Completed only resends the response
        if next_state is not self.state:
            self._enter(next_state, now, out)
        return out

    def abandon(self) -> None:
        """The TU took over what is left (resending the final response until
        Timer J): no timer of this transaction fires any more."""
        self._timers.clear()

    def receive_request(self, now: float) -> list[Send]:
        """The request came again: resend the last response, if any."""
        out: list = []
        self._event(Event.REQUEST, now, out)
        return out

    def receive_ack(self, now: float) -> list[Send | Terminated]:
        """An ACK matched this INVITE transaction (§17.2.1).

        In Completed it confirms the non-2xx final (over TCP the transaction
        then terminates at once).  In Accepted the ACK is for the 2xx and not
        ours (RFC 6026 §7.1): this returns ``[]`` and the state stays
        Accepted, so the proxy forwards it.  Otherwise it is absorbed.
        """
        out: list = []
        self._event(Event.ACK, now, out)
        return out

    def _event(self, event: Event, now: float, out: list) -> None:
        next_state, action = self._transition(event)
        if action is Action.RESEND_RESPONSE:
            send = self._last_response
            # Only a retransmission timer can fire twice in one handle_timer
            # call: send one copy, keep the schedule.
            if send is not None and not (out and out[-1] is send):
                out.append(send)
            if event is Event.TIMER_G:
                self._interval_g = min(2 * self._interval_g, self.timers.t2)
                self._timers[Event.TIMER_G] = now + self._interval_g
        elif action is Action.TIME_OUT:
            out.append(TIMED_OUT)
        if next_state is not self.state:
            self._enter(next_state, now, out)

    def _enter(self, state: ServerState, now: float, out: list) -> None:
        """Move to ``state`` and arm its timers (none survive a change)."""
        self.state = state
        timers = self._timers
        timers.clear()
        if state is ServerState.COMPLETED:
            if self.is_invite:
                if not self.reliable:
                    timers[Event.TIMER_G] = now + self._interval_g
                timers[Event.TIMER_H] = now + self._timeout
            elif self._linger_j:
                timers[Event.TIMER_J] = linger_until(now + self._linger_j)
            else:
                self._event(Event.TIMER_J, now, out)
        elif state is ServerState.CONFIRMED:
            if self._linger_i:
                timers[Event.TIMER_I] = linger_until(now + self._linger_i)
            else:
                self._event(Event.TIMER_I, now, out)
        elif state is ServerState.ACCEPTED:
            timers[Event.TIMER_L] = linger_until(now + self._timeout)
        elif state is ServerState.TERMINATED:
            out.append(TERMINATED)

    def __repr__(self) -> str:
        return (
            f"<ServerTransaction {'INVITE' if self.is_invite else 'non-INVITE'} {self.state.name}"
            f" {self.transport} {self.destination}>"
        )
