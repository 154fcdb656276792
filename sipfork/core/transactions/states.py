"""States, events and the four transition tables of RFC 3261 §17.

Each machine is one table, ``(state, event) -> (next state, action)``: the
whole protocol of a transaction kind on one screen.  A pair missing from its
table is impossible and raises :class:`TransactionError`; what the RFC says to
absorb is in the table with the action ``ABSORB``.  What happens on *entering*
a state (the timers it arms) is in each class's ``_enter``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class ServerState(enum.Enum):
    TRYING = "Trying"  # non-INVITE only
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"  # INVITE only
    ACCEPTED = "Accepted"  # INVITE only (RFC 6026)
    TERMINATED = "Terminated"

    # Members are singletons compared by identity: hash them the C way (the
    # tables are looked up on every message; Enum.__hash__ is Python code).
    __hash__ = object.__hash__


class ClientState(enum.Enum):
    CALLING = "Calling"  # INVITE only
    TRYING = "Trying"  # non-INVITE only
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"  # INVITE only (RFC 6026)
    TERMINATED = "Terminated"

    __hash__ = object.__hash__


class Event(enum.Enum):
    """What can happen to a transaction."""

    PROVISIONAL = "1xx"  # a server sends it (from the TU); a client receives it
    SUCCESS = "2xx"
    FAILURE = "300-699"
    REQUEST = "request retransmission"  # server: the request came again
    ACK = "ACK"  # server: an ACK matched the INVITE transaction
    CANCEL = "CANCEL sent"  # client INVITE: the proxy sent a CANCEL for it
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"
    TIMER_CANCEL = "64*T1 after CANCEL"  # RFC 3261 §9.1, no letter

    __hash__ = object.__hash__


class Action(enum.Enum):
    ABSORB = "nothing"
    SEND_RESPONSE = "send the response, remember it"  # server
    RESEND_RESPONSE = "resend the last response, if any"  # server
    RETRANSMIT_REQUEST = "send the request again"  # client
    DELIVER = "pass the response up"  # client
    ACK_AND_DELIVER = "send an ACK, pass the response up"  # client INVITE
    RESEND_ACK = "send the ACK again"  # client INVITE
    ARM_CANCEL_TIMER = "give up 64*T1 from now"  # client INVITE
    TIME_OUT = "tell the proxy it timed out"


Transitions = Mapping[tuple[enum.Enum, Event], tuple[enum.Enum, Action]]

_S = ServerState
_C = ClientState
_E = Event
_A = Action

#: RFC 3261 Figure 7 with RFC 6026 Figure 5 (Accepted).
INVITE_SERVER: Transitions = {
    (_S.PROCEEDING, _E.PROVISIONAL): (_S.PROCEEDING, _A.SEND_RESPONSE),
    (_S.PROCEEDING, _E.SUCCESS): (_S.ACCEPTED, _A.SEND_RESPONSE),
    (_S.PROCEEDING, _E.FAILURE): (_S.COMPLETED, _A.SEND_RESPONSE),
    (_S.PROCEEDING, _E.REQUEST): (_S.PROCEEDING, _A.RESEND_RESPONSE),
    (_S.PROCEEDING, _E.ACK): (_S.PROCEEDING, _A.ABSORB),  # no final sent yet: a stray
    (_S.COMPLETED, _E.REQUEST): (_S.COMPLETED, _A.RESEND_RESPONSE),
    (_S.COMPLETED, _E.ACK): (_S.CONFIRMED, _A.ABSORB),
    (_S.COMPLETED, _E.TIMER_G): (_S.COMPLETED, _A.RESEND_RESPONSE),
    (_S.COMPLETED, _E.TIMER_H): (_S.TERMINATED, _A.TIME_OUT),
    (_S.CONFIRMED, _E.REQUEST): (_S.CONFIRMED, _A.ABSORB),
    (_S.CONFIRMED, _E.ACK): (_S.CONFIRMED, _A.ABSORB),
    (_S.CONFIRMED, _E.TIMER_I): (_S.TERMINATED, _A.ABSORB),
    (_S.ACCEPTED, _E.SUCCESS): (_S.ACCEPTED, _A.SEND_RESPONSE),  # retransmitted or forked 2xx
    (_S.ACCEPTED, _E.REQUEST): (_S.ACCEPTED, _A.ABSORB),
    (_S.ACCEPTED, _E.ACK): (_S.ACCEPTED, _A.ABSORB),  # not ours: the proxy forwards it
    (_S.ACCEPTED, _E.TIMER_L): (_S.TERMINATED, _A.ABSORB),
}

#: RFC 3261 Figure 8.
NON_INVITE_SERVER: Transitions = {
    (_S.TRYING, _E.PROVISIONAL): (_S.PROCEEDING, _A.SEND_RESPONSE),
    (_S.TRYING, _E.SUCCESS): (_S.COMPLETED, _A.SEND_RESPONSE),
    (_S.TRYING, _E.FAILURE): (_S.COMPLETED, _A.SEND_RESPONSE),
    (_S.TRYING, _E.REQUEST): (_S.TRYING, _A.ABSORB),
    (_S.PROCEEDING, _E.PROVISIONAL): (_S.PROCEEDING, _A.SEND_RESPONSE),
    (_S.PROCEEDING, _E.SUCCESS): (_S.COMPLETED, _A.SEND_RESPONSE),
    (_S.PROCEEDING, _E.FAILURE): (_S.COMPLETED, _A.SEND_RESPONSE),
    (_S.PROCEEDING, _E.REQUEST): (_S.PROCEEDING, _A.RESEND_RESPONSE),
    (_S.COMPLETED, _E.REQUEST): (_S.COMPLETED, _A.RESEND_RESPONSE),
    (_S.COMPLETED, _E.SUCCESS): (_S.COMPLETED, _A.ABSORB),  # §17.2.2: "MUST be discarded"
    (_S.COMPLETED, _E.FAILURE): (_S.COMPLETED, _A.ABSORB),
    (_S.COMPLETED, _E.TIMER_J): (_S.TERMINATED, _A.ABSORB),
}

#: RFC 3261 Figure 5 with RFC 6026 Figure 4 (Accepted), and §9.1 for CANCEL.
INVITE_CLIENT: Transitions = {
    (_C.CALLING, _E.TIMER_A): (_C.CALLING, _A.RETRANSMIT_REQUEST),
    (_C.CALLING, _E.TIMER_B): (_C.TERMINATED, _A.TIME_OUT),
    (_C.CALLING, _E.PROVISIONAL): (_C.PROCEEDING, _A.DELIVER),
    (_C.CALLING, _E.SUCCESS): (_C.ACCEPTED, _A.DELIVER),
    (_C.CALLING, _E.FAILURE): (_C.COMPLETED, _A.ACK_AND_DELIVER),
    (_C.CALLING, _E.CANCEL): (_C.CALLING, _A.ARM_CANCEL_TIMER),
    (_C.CALLING, _E.TIMER_CANCEL): (_C.TERMINATED, _A.TIME_OUT),
    (_C.PROCEEDING, _E.PROVISIONAL): (_C.PROCEEDING, _A.DELIVER),
    (_C.PROCEEDING, _E.SUCCESS): (_C.ACCEPTED, _A.DELIVER),
    (_C.PROCEEDING, _E.FAILURE): (_C.COMPLETED, _A.ACK_AND_DELIVER),
    (_C.PROCEEDING, _E.CANCEL): (_C.PROCEEDING, _A.ARM_CANCEL_TIMER),
    (_C.PROCEEDING, _E.TIMER_CANCEL): (_C.TERMINATED, _A.TIME_OUT),
    (_C.COMPLETED, _E.PROVISIONAL): (_C.COMPLETED, _A.ABSORB),
    # A 2xx after a non-2xx: a forking proxy downstream forwards every 2xx
    # even after its final response (§16.7 step 10); pass it up so the call
    # is not lost.
    (_C.COMPLETED, _E.SUCCESS): (_C.COMPLETED, _A.DELIVER),
    (_C.COMPLETED, _E.FAILURE): (_C.COMPLETED, _A.RESEND_ACK),
    (_C.COMPLETED, _E.CANCEL): (_C.COMPLETED, _A.ABSORB),  # the final crossed the CANCEL
    (_C.COMPLETED, _E.TIMER_D): (_C.TERMINATED, _A.ABSORB),
    (_C.ACCEPTED, _E.PROVISIONAL): (_C.ACCEPTED, _A.ABSORB),
    (_C.ACCEPTED, _E.SUCCESS): (_C.ACCEPTED, _A.DELIVER),  # every 2xx goes up
    (_C.ACCEPTED, _E.FAILURE): (_C.ACCEPTED, _A.ABSORB),
    (_C.ACCEPTED, _E.CANCEL): (_C.ACCEPTED, _A.ABSORB),
    (_C.ACCEPTED, _E.TIMER_M): (_C.TERMINATED, _A.ABSORB),
}

#: RFC 3261 Figure 6.
NON_INVITE_CLIENT: Transitions = {
    (_C.TRYING, _E.TIMER_E): (_C.TRYING, _A.RETRANSMIT_REQUEST),
    (_C.TRYING, _E.TIMER_F): (_C.TERMINATED, _A.TIME_OUT),
    (_C.TRYING, _E.PROVISIONAL): (_C.PROCEEDING, _A.DELIVER),
    (_C.TRYING, _E.SUCCESS): (_C.COMPLETED, _A.DELIVER),
    (_C.TRYING, _E.FAILURE): (_C.COMPLETED, _A.DELIVER),
    (_C.PROCEEDING, _E.TIMER_E): (_C.PROCEEDING, _A.RETRANSMIT_REQUEST),
    (_C.PROCEEDING, _E.TIMER_F): (_C.TERMINATED, _A.TIME_OUT),
    (_C.PROCEEDING, _E.PROVISIONAL): (_C.PROCEEDING, _A.DELIVER),
    (_C.PROCEEDING, _E.SUCCESS): (_C.COMPLETED, _A.DELIVER),
    (_C.PROCEEDING, _E.FAILURE): (_C.COMPLETED, _A.DELIVER),
    (_C.COMPLETED, _E.PROVISIONAL): (_C.COMPLETED, _A.ABSORB),
    (_C.COMPLETED, _E.SUCCESS): (_C.COMPLETED, _A.ABSORB),
    (_C.COMPLETED, _E.FAILURE): (_C.COMPLETED, _A.ABSORB),
    (_C.COMPLETED, _E.TIMER_K): (_C.TERMINATED, _A.ABSORB),
}


def status_event(status: int) -> Event:
    """The event a response of this status is: 1xx, 2xx or 300-699."""
    if status < 200:
        return Event.PROVISIONAL
    if status < 300:
        return Event.SUCCESS
    return Event.FAILURE
