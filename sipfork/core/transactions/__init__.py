"""The SIP transaction layer: RFC 3261 §17, with RFC 6026's Accepted states.

Four state machines, pure and driven by ``now`` (DESIGN.md: events in,
values out):

- :class:`ServerTransaction` for a request we received: the INVITE server
  transaction (§17.2.1, RFC 6026 §7.1) or the non-INVITE one (§17.2.2);
- :class:`ClientTransaction` for a request we send: the INVITE client
  transaction (§17.1.1, RFC 6026 §7.2) or the non-INVITE one (§17.1.2).

Every machine is one table, ``(state, event) -> (next state, action)``, in
``states.py``; what happens on entering a state (arming timers) is in one method per
class, ``_enter``.  An event missing from the table is impossible in that state
and raises :class:`TransactionError` naming both.  Events the RFC says to
absorb are in the table with the action ``ABSORB`` and return ``[]``.  Every
event after the transaction terminated is impossible: the core forgets a
transaction when it returns :class:`Terminated`.

Timers are plain floats (absolute deadlines) in a small dict.  The shell arms
one timer at the core's earliest :meth:`deadline`; ``handle_timer(now)`` fires
every due timer in deadline order.  A retransmission timer reschedules from
its own deadline, not from ``now``, so the schedule does not drift when the
shell is late; and if it was due several times it sends one copy, not a burst.

"Reliable" means TCP: no retransmission timers (A, E, G), and the timers that
only absorb retransmissions (D, I, J, K) are zero, so the transaction
terminates at once.  Timer C (the proxy's 3-minute timer) is not here.
"""

from sipfork.core.transactions.base import (
    Deliver,
    Terminated,
    TimedOut,
    Timers,
    TransactionError,
)
from sipfork.core.transactions.client import ClientTransaction
from sipfork.core.transactions.server import ServerTransaction, response_destination
from sipfork.core.transactions.states import ClientState, Event, ServerState

__all__ = [
    "ClientState",
    "ClientTransaction",
    "Deliver",
    "Event",
    "ServerState",
    "ServerTransaction",
    "Terminated",
    "TimedOut",
    "Timers",
    "TransactionError",
    "response_destination",
]
