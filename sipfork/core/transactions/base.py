"""What both transaction kinds share: timer values, outputs, the error, and
the table-driven event loop over a dict of deadlines."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NoReturn

from attrs import field, frozen

from sipfork.core.effects import Send
from sipfork.core.transactions.states import Action, ClientState, Event, ServerState, Transitions
from sipfork.sip.errors import LocalProtocolError

if TYPE_CHECKING:
    import enum

    from sipfork.sip.message import Response


def _positive(instance: object, attribute: object, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{getattr(attribute, 'name', 'timer')} must be positive, not {value!r}")


@frozen(kw_only=True)
class Timers:
    """The RFC 3261 §17.1.1.1 / Table 4 base values, in seconds.

    Timers A to M derive from them: A, E, G start at T1; B, F, H, J, L, M
    are 64*T1; E and G are capped at T2; I and K are T4.  Timer D is "at
    least 32 seconds" for unreliable transports (§17.1.1.2) and has its own
    value.
    """

    t1: float = field(default=0.5, validator=_positive)
    t2: float = field(default=4.0, validator=_positive)
    t4: float = field(default=5.0, validator=_positive)
    timer_d: float = field(default=32.0, validator=_positive)


# The timers that only keep a finished transaction around to absorb
# retransmissions (D, I, J, K, L, M) end on a grid of LINGER_GRID seconds,
# never before their RFC value. Each call leaves half a dozen of them, each
# at its own instant: on 10 ms timer ticks an idle proxy woke ~100 times a
# second to forget transactions, one cold wake-up at a time, which cost
# more CPU at 10-100 calls/s than the calls did (benchmarks/README.md). On
# the grid, all that end in the same second go in one wake-up.
LINGER_GRID = 1.0


def linger_until(at: float) -> float:
    """``at`` rounded up to the linger grid."""
    return math.ceil(at / LINGER_GRID) * LINGER_GRID


@frozen(kw_only=True)
class Deliver:
    """A client transaction passes this response up to the proxy."""

    response: Response


@frozen
class TimedOut:
    """Timer B or F fired (the proxy treats the branch as a 408), the 64*T1
    after a CANCEL ran out (RFC 3261 §9.1), or Timer H fired (no ACK came)."""


@frozen
class Terminated:
    """The transaction is done; the core forgets it."""


TIMED_OUT = TimedOut()
TERMINATED = Terminated()


class TransactionError(LocalProtocolError):
    """The transaction was asked to do something impossible in its state."""


TERMINATED_STATES = frozenset({ServerState.TERMINATED, ClientState.TERMINATED})
_RETRANSMIT_TIMERS = frozenset({Event.TIMER_A, Event.TIMER_E, Event.TIMER_G})


def _first_due(item: tuple[Event, float]) -> tuple[float, bool]:
    # Deadline order; on a tie the timer that ends the state goes first, so
    # no retransmission is sent at the instant the transaction gives up.
    return (item[1], item[0] in _RETRANSMIT_TIMERS)


class Transaction:
    """What both kinds share: the table lookup and the timer dict."""

    __slots__ = ("state", "is_invite", "reliable", "timers", "_table", "_timers")

    state: enum.Enum
    _table: Transitions
    _timers: dict[Event, float]

    def deadline(self) -> float | None:
        """The earliest armed timer, or None."""
        return min(self._timers.values(), default=None)

    def handle_timer(self, now: float) -> list[Send | TimedOut | Terminated]:
        """Fire every timer due at ``now``, in deadline order."""
        if self.state in TERMINATED_STATES:
            self._impossible("a timer")
        out: list = []
        timers = self._timers
        while timers:
            if len(timers) == 1:  # the usual case: a finished transaction's last timer
                ((timer, at),) = timers.items()
            else:
                timer, at = min(timers.items(), key=_first_due)
            if at > now:
                break
            del timers[timer]
            self._event(timer, at, out)
        return out

    def _transition(self, event: Event, status: int = 0) -> tuple[enum.Enum, Action]:
        try:
            return self._table[(self.state, event)]
        except KeyError:
            self._impossible(f"{status} ({event.value})" if status else event.value)

    def _impossible(self, what: str) -> NoReturn:
        kind = "INVITE" if self.is_invite else "non-INVITE"
        raise TransactionError(
            f"{kind} {type(self).__name__}: impossible in state {self.state.name} on {what}"
        )

    def _event(self, event: Event, now: float, out: list) -> None:
        raise NotImplementedError
