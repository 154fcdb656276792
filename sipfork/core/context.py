"""The response context of one proxied request: it carries out a ring plan.

RFC 3261 §16.7 (response processing), §16.10 (CANCEL), §9.1; RFC 3326
(Reason); CONFIG.md Semantics 2-5 (rules, stages, falling through).

One context serves the caller's server transaction across every rule and
stage of the plan. It decides; the :class:`Forwarder` (the core's
:class:`sipfork.core.forwarder.Forwarder`) owns the transactions and the wire.
"""

from __future__ import annotations

import enum
from typing import Protocol

from attrs import define, field

from sipfork.core.best_response import best_status, upstream_status
from sipfork.core.upstream import Upstream
from sipfork.routing.plan import Branch, Otherwise, Plan, Reason, Rule
from sipfork.sip.message import Request, Response

TIMER_C = 180.0  # RFC 3261 §16.6 step 11: "greater than 3 minutes"
COMPLETED_ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'
_BUSY = frozenset({486, 600, 603})


class Phase(enum.Enum):
    CALLING = "calling"  # forked, no provisional response yet
    RINGING = "ringing"  # a provisional response came
    DONE = "done"  # a final response came, or it timed out


class Outcome(enum.Enum):
    """How a branch ended, for choosing the rule's fall-through reason."""

    ANSWERED = "answered"
    FAILED = "failed"  # a final non-2xx response (status kept)
    NO_ANSWER = "no-answer"  # its ring time ran out
    CANCELLED = "cancelled"  # we stopped it (answered elsewhere, caller gave up)
    REPLACED = "replaced"  # a gateway challenged it; a branch with credentials took over


@define(slots=True, kw_only=True, eq=False)
class BranchState:
    id: str  # the Via branch of the forked request
    spec: Branch
    rule_index: int
    phase: Phase = Phase.CALLING
    outcome: Outcome | None = None
    final: Response | None = None
    status: int | None = None
    ring_end: float | None = None
    timer_c: float | None = None
    # A CANCEL waits for the first provisional response (RFC 3261 §9.1).
    cancel_reason: str | None = None
    cancel_wanted: bool = False
    cancel_sent: bool = False
    live: bool = True  # its client transaction still exists
    authenticated: bool = False  # it carries credentials for a gateway's challenge
    cseq_shift: int = 0  # its CSeq number minus the caller's (RFC 3261 §22.2)


class Forwarder(Protocol):
    """What a context needs from the core (:class:`sipfork.core.forwarder.Forwarder`)."""

    def fork(self, context: CallContext, spec: Branch, rule_index: int, now: float) -> BranchState: ...

    def cancel(self, context: CallContext, branch: BranchState, reason: str | None, now: float) -> None: ...

    def authenticate(self, context: CallContext, branch: BranchState, response: Response,
                     now: float) -> BranchState | None: ...

    def forward_answer(self, context: CallContext, branch: BranchState, response: Response, now: float) -> None: ...

    def respond(self, context: CallContext, status: int, now: float, *, response: Response | None = None,
                headers: tuple[tuple[str, str], ...] = ()) -> None: ...

    def log_call(self, context: CallContext, outcome: str, now: float) -> None: ...


class ContextState(enum.Enum):
    RINGING = "ringing"  # working through the plan
    ANSWERED = "answered"  # a 2xx went upstream; more 2xx are still forwarded
    FAILED = "failed"  # a final non-2xx went upstream


@define(slots=True, kw_only=True, eq=False)
class CallContext:
    """A caller's request and the plan that decides what rings."""

    request: Request
    plan: Plan
    forwarder: Forwarder
    upstream: Upstream
    started: float
    is_invite: bool = True
    timer_c: float = TIMER_C
    state: ContextState = ContextState.RINGING
    rule_index: int = -1
    rule_end: float | None = None
    pending: list[tuple[float, Branch]] = field(factory=list)
    branches: list[BranchState] = field(factory=list)
    by_id: dict[str, BranchState] = field(factory=dict)
    last_reason: Reason | None = None
    in_otherwise: bool = False
    answered_by: BranchState | None = None
    final_status: int | None = None  # what went upstream

    # -- the plan ---------------------------------------------------------

    def start(self, now: float) -> None:
        if self.plan.rules:
            self._enter_rule(0, now)
        else:
            self.last_reason = Reason.UNREACHABLE
            self._otherwise(now)

    def _rule(self, index: int) -> Rule:
        if index < len(self.plan.rules):
            return self.plan.rules[index]
        branch = self.plan.otherwise.branch
        return Rule(name="otherwise", ringing="parallel", branches=(branch,) if branch else (), duration=None)

    def _enter_rule(self, index: int, now: float) -> None:
        """Start rule ``index``; a device that rings on keeps ringing."""
        rule = self._rule(index)
        self.rule_index = index
        self.rule_end = None if rule.duration is None or not self.is_invite else now + rule.duration
        ringing = {b.spec.key: b for b in self.branches if b.phase is not Phase.DONE and not b.cancel_wanted}
        self.pending = []
        kept: set[str] = set()
        for spec in rule.branches:
            carried = ringing.get(spec.key)
            if carried is not None and spec.key not in kept:
                kept.add(spec.key)
                carried.rule_index = index
                carried.spec = spec
                carried.ring_end = self._ring_end(spec, now)
            elif spec.key not in kept:
                self.pending.append((now + spec.start, spec))
        self.pending.sort(key=lambda item: item[0])
        for key, branch in ringing.items():
            if key not in kept:
                self._cancel(branch, None, Outcome.NO_ANSWER, now)
        self._start_due(now)
        self._progress(now)

    def _ring_end(self, spec: Branch, now: float) -> float | None:
        if spec.duration is None or not self.is_invite:
            return None
        return now + spec.duration

    def _start_due(self, now: float) -> None:
        while self.pending and self.pending[0][0] <= now and self.state is ContextState.RINGING:
            start, spec = self.pending.pop(0)
            branch = self.forwarder.fork(self, spec, self.rule_index, now)
            branch.ring_end = self._ring_end(spec, start)
            branch.timer_c = now + self.timer_c if self.is_invite else None
            self.branches.append(branch)
            self.by_id[branch.id] = branch

    def _current(self) -> list[BranchState]:
        return [b for b in self.branches if b.rule_index == self.rule_index]

    def _progress(self, now: float) -> None:
        """After a branch ended: start the next target early, or end the rule."""
        if self.state is not ContextState.RINGING:
            return
        if any(b.phase is not Phase.DONE and not b.cancel_wanted for b in self._current()):
            return
        if self.pending:
            # Nothing rings but targets wait for their turn: the next one
            # starts now and the rest of the rule moves forward with it.
            shift = self.pending[0][0] - now
            self.pending = [(start - shift, spec) for start, spec in self.pending]
            if self.rule_end is not None:
                self.rule_end -= shift
            self._start_due(now)
            return
        self._end_rule(self._reason(), now)

    def _reason(self) -> Reason:
        current = self._current()
        if any(b.outcome is Outcome.NO_ANSWER for b in current):
            return Reason.NO_ANSWER
        statuses = [b.status for b in current if b.outcome is Outcome.FAILED]
        if statuses and all(status in _BUSY for status in statuses):
            return Reason.BUSY
        return Reason.UNREACHABLE

    def _end_rule(self, reason: Reason, now: float) -> None:
        self.last_reason = reason
        if not self.in_otherwise:
            for index in range(self.rule_index + 1, len(self.plan.rules)):
                if reason in self.plan.rules[index].on:
                    self._enter_rule(index, now)
                    return
        for branch in self.branches:
            if branch.phase is not Phase.DONE:
                self._cancel(branch, None, Outcome.NO_ANSWER, now)
        self.pending = []
        self.rule_end = None
        self._otherwise(now)

    def _otherwise(self, now: float) -> None:
        otherwise: Otherwise = self.plan.otherwise
        if otherwise.branch is not None and not self.in_otherwise:
            self.in_otherwise = True
            self._enter_rule(len(self.plan.rules), now)
            return
        if otherwise.status is not None and not self.in_otherwise:
            self._fail(otherwise.status, now)
            return
        self._fail_with_best(now)

    def _fail_with_best(self, now: float) -> None:
        finals = [b for b in self.branches if b.outcome is Outcome.FAILED and b.final is not None]
        statuses = [b.status for b in finals if b.status is not None]
        if self.last_reason is Reason.NO_ANSWER or not self.branches:
            statuses.append(480)
        status = best_status(statuses) or 480
        if status in (401, 407):
            challenges = tuple(
                (name, value)
                for b in finals
                if b.status in (401, 407) and b.final is not None
                for name in ("WWW-Authenticate", "Proxy-Authenticate")
                for value in b.final.header_lines(name)
            )
            self._fail(status, now, headers=challenges)
            return
        chosen = next((b.final for b in finals if b.status == status), None)
        if chosen is not None and upstream_status(status) == status:
            self._fail(status, now, response=chosen)
        else:
            self._fail(upstream_status(status), now)

    def _fail(self, status: int, now: float, *, response: Response | None = None,
              headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.state = ContextState.FAILED
        self.final_status = status
        self.pending = []
        self.rule_end = None
        self.forwarder.respond(self, status, now, response=response, headers=headers)
        self.forwarder.log_call(self, f"{status} ({self.last_reason.value if self.last_reason else 'refused'})", now)

    # -- the branches -----------------------------------------------------

    def _cancel(self, branch: BranchState, reason: str | None, outcome: Outcome, now: float) -> None:
        """Stop a branch: CANCEL now if it rang, else once it does (§9.1)."""
        if branch.phase is Phase.DONE or branch.cancel_wanted:
            return
        branch.cancel_wanted = True
        branch.cancel_reason = reason
        branch.outcome = outcome
        branch.ring_end = None
        branch.timer_c = None
        if not self.is_invite:
            return
        if branch.phase is Phase.RINGING:
            branch.cancel_sent = True
            self.forwarder.cancel(self, branch, reason, now)

    def receive_provisional(self, branch: BranchState, response: Response, now: float) -> bool:
        """A 1xx on a branch; True when it goes upstream (never a 100)."""
        if branch.phase is Phase.DONE:
            return False
        branch.phase = Phase.RINGING
        if branch.cancel_wanted:
            if not branch.cancel_sent:
                branch.cancel_sent = True
                self.forwarder.cancel(self, branch, branch.cancel_reason, now)
            return False
        branch.timer_c = now + self.timer_c
        return response.status > 100 and self.state is ContextState.RINGING

    def receive_final(self, branch: BranchState, response: Response, now: float) -> None:
        """A final response on a branch. Every 2xx goes upstream (RFC 3261
        §16.7 step 5) — before the other branches are cancelled: the caller
        waits for it, the losers do not."""
        status = response.status
        first = branch.phase is not Phase.DONE
        branch.phase = Phase.DONE
        branch.ring_end = None
        branch.timer_c = None
        if 200 <= status < 300:
            self.forwarder.forward_answer(self, branch, response, now)
            if self.state is ContextState.RINGING:
                self.state = ContextState.ANSWERED
                self.final_status = status
                self.answered_by = branch
                branch.outcome = Outcome.ANSWERED
                self.pending = []
                self.rule_end = None
                for other in self.branches:
                    if other is not branch:
                        self._cancel(other, COMPLETED_ELSEWHERE, Outcome.CANCELLED, now)
                self.forwarder.log_call(self, f"answered by {branch.spec.label}", now)
            return
        if not first:
            return
        if (status in (401, 407) and branch.spec.gateway is not None and not branch.authenticated
                and self.state is ContextState.RINGING and not branch.cancel_wanted):
            # The gateway wants our credentials: answer once, on a new
            # branch of the same call (as Kamailio's uac_auth does).
            retry = self.forwarder.authenticate(self, branch, response, now)
            if retry is not None:
                branch.outcome = Outcome.REPLACED
                retry.ring_end = branch.ring_end
                retry.timer_c = now + self.timer_c
                self.branches.append(retry)
                self.by_id[retry.id] = retry
                return
        branch.final = response
        branch.status = status
        if branch.outcome is None:
            branch.outcome = Outcome.FAILED
        if self.state is not ContextState.RINGING:
            return
        if status >= 600:
            # A 6xx says the callee will not talk anywhere (§16.7 step 5).
            for other in self.branches:
                self._cancel(other, None, Outcome.CANCELLED, now)
        self._progress(now)

    def branch_timed_out(self, branch: BranchState, now: float) -> None:
        """Timer B or F: the branch never answered (a 408 of our own)."""
        branch.live = False
        if branch.phase is Phase.DONE:
            return
        branch.phase = Phase.DONE
        branch.ring_end = None
        branch.timer_c = None
        if branch.outcome is None:
            branch.outcome = Outcome.FAILED
            branch.status = 408
        self._progress(now)

    def cancel_by_caller(self, reason: str | None, now: float) -> None:
        """A CANCEL from the caller stops everything, at any stage (§16.10)."""
        if self.state is not ContextState.RINGING:
            return
        for branch in self.branches:
            self._cancel(branch, reason, Outcome.CANCELLED, now)
        self.last_reason = None
        self.state = ContextState.FAILED
        self.final_status = 487
        self.pending = []
        self.rule_end = None
        self.forwarder.respond(self, 487, now)
        self.forwarder.log_call(self, "cancelled by the caller", now)

    # -- time -------------------------------------------------------------

    def deadline(self) -> float | None:
        earliest = self.rule_end
        if self.pending:
            earliest = self.pending[0][0] if earliest is None else min(earliest, self.pending[0][0])
        for branch in self.branches:
            value = branch.ring_end
            if value is not None and (earliest is None or value < earliest):
                earliest = value
            value = branch.timer_c
            if value is not None and (earliest is None or value < earliest):
                earliest = value
        return earliest

    def handle_timer(self, now: float) -> None:
        if self.state is ContextState.RINGING and self.rule_end is not None and self.rule_end <= now:
            # The rule's end before the branches' own: a device whose ring
            # time ends with the rule rings on when the next rule names it.
            self.rule_end = None
            self._end_rule(Reason.NO_ANSWER, now)
        for branch in self.branches:
            if branch.ring_end is not None and branch.ring_end <= now:
                self._cancel(branch, None, Outcome.NO_ANSWER, now)
            elif branch.timer_c is not None and branch.timer_c <= now:
                # Timer C: a branch that rang for minutes without a final
                # answer is given up (RFC 3261 §16.8).
                self._cancel(branch, None, Outcome.NO_ANSWER, now)
        if self.state is not ContextState.RINGING:
            return
        self._start_due(now)
        self._progress(now)

    @property
    def finished(self) -> bool:
        """Upstream has its final answer and no branch transaction is left."""
        return self.state is not ContextState.RINGING and not any(b.live for b in self.branches)
