"""The ring plan: what the routing planner decides and the proxy carries out.

A plan is a chain of rules. The call starts in the first rule; when a rule
ends unanswered for a reason (``no-answer``, ``busy``, ``unreachable``), the
call moves to the next rule whose ``on`` holds that reason, and after the
last one the plan's ``otherwise`` decides (CONFIG.md, Semantics 1-5).
"""

from __future__ import annotations

import enum

from attrs import frozen


class Reason(enum.Enum):
    """Why a rule ended unanswered (CONFIG.md, Semantics 3)."""

    NO_ANSWER = "no-answer"
    BUSY = "busy"
    UNREACHABLE = "unreachable"


ALL_REASONS = frozenset(Reason)


@frozen(kw_only=True)
class Hop:
    """The address a branch is sent to (a binding's source, or a gateway)."""

    host: str
    port: int
    transport: str  # "udp" | "tcp"
    # Over TCP: the contact's own address, tried when the connection it
    # registered over is gone (after a restart of the proxy, say).
    alternate: tuple[str, int] | None = None


@frozen(kw_only=True)
class Branch:
    """One destination that rings within a rule.

    ``key`` names the device or destination across rules: a branch with the
    same key in the next rule keeps ringing instead of being cancelled and
    forked again (CONFIG.md, Semantics 2).
    """

    key: str
    label: str  # for logs and explain: "alice (sip:alice@127.0.0.1:5062)"
    request_uri: str
    hop: Hop
    start: float = 0.0  # seconds after the rule starts
    duration: float | None = None  # seconds it rings; None: until the rule ends
    gateway: str | None = None  # whose credentials answer a 401/407
    headers: tuple[tuple[str, str], ...] = ()  # added to the forked INVITE (Diversion)


@frozen(kw_only=True)
class Rule:
    """One step of the chain: a forwarding rule, or a call to a user."""

    name: str  # "rule 2 (schedule mon-fri 08:00-18:00)"
    ringing: str  # "parallel" | "sequential"
    branches: tuple[Branch, ...]
    duration: float | None  # the rule's ring time; None: unlimited
    on: frozenset[Reason] = ALL_REASONS
    missing: tuple[str, ...] = ()  # targets with no registered device, for explain


@frozen(kw_only=True)
class Otherwise:
    """The base rule: a status to answer, a branch to forward to, or neither.

    Neither (``status`` and ``branch`` both None) means the best response
    collected from the branches (RFC 3261 §16.7), as for a call to a user.
    """

    status: int | None = None
    branch: Branch | None = None


@frozen(kw_only=True)
class Plan:
    target: str  # what was dialled, as the planner understood it: "user alice"
    rules: tuple[Rule, ...]
    otherwise: Otherwise
    notes: tuple[str, ...] = ()  # why rules did not apply, for explain

    def first_rule_only(self) -> Plan:
        """Non-INVITE requests (MESSAGE, SUBSCRIBE …) go to the first rule's
        devices only: they do not ring, so they do not fall through."""
        return Plan(target=self.target, rules=self.rules[:1], otherwise=Otherwise(), notes=self.notes)


@frozen(kw_only=True)
class Refusal:
    """The call is refused before anything rings (404, 403, 484, ...)."""

    status: int
    reason: str
