"""``sipfork explain``: what would ring for a call, as a readable timeline.

The text is rendered from the very plan the proxy would carry out
(``plan_call``), so it cannot drift from what happens on the wire. Times
are seconds after the rule starts; a rule reached by falling through starts
when the previous one ended.

Example::

    Call to 022166966966 (number +4922166966966) from +4930123456, Mon 2026-03-02 10:00 Europe/Berlin

    Rules that do not apply:
      rule 3 (date 2026-12-24): not today (2026-03-02)

    rule 1 (schedule mon-fri 08:00-18:00): rings in parallel for 20s
        0s  ring alice (sip:alice@127.0.0.1:5062)  for 20s
       10s  ring +491701234567 via trunk  for 10s
      no registered device: bob
      on no-answer (after 20s): go to rule 2 (always)
      on busy: go to rule 2 (always)
      on unreachable: go to rule 2 (always)
    ...
    otherwise: answer 480 Temporarily Unavailable
"""

from __future__ import annotations

import datetime as dt

from sipfork.config import Config
from sipfork.routing.callers import normalise_caller
from sipfork.routing.numbers import plain_number
from sipfork.routing.plan import Otherwise, Plan, Reason, Refusal, Rule
from sipfork.routing.planner import Registrations, local_time, next_rule, plan_call

__all__ = ["explain"]

_STATUS_TEXT = {480: "Temporarily Unavailable", 486: "Busy Here", 603: "Decline", 403: "Forbidden", 404: "Not Found"}


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _otherwise(otherwise: Otherwise) -> str:
    if otherwise.status is not None:
        return f"answer {otherwise.status} {_STATUS_TEXT.get(otherwise.status, '')}".rstrip()
    if otherwise.branch is not None:
        return f"forward to {otherwise.branch.label}"
    return "answer the best response (486 when all were busy, else 480)"


def _rule_lines(plan: Plan, index: int) -> list[str]:
    rule: Rule = plan.rules[index]
    how = "in parallel" if rule.ringing == "parallel" else "one after another"
    length = "until answered" if rule.duration is None else f"for {_seconds(rule.duration)}"
    lines = [f"{rule.name}: rings {how} {length}"]
    for branch in sorted(rule.branches, key=lambda b: b.start):
        if branch.duration is not None:
            ring = f"for {_seconds(branch.duration)}"
        elif rule.duration is not None:
            ring = f"for {_seconds(rule.duration - branch.start)}"
        else:
            ring = "until answered"
        lines.append(f"  {_seconds(branch.start):>5}  ring {branch.label}  {ring}")
    if rule.missing:
        lines.append(f"  no registered device: {', '.join(rule.missing)}")
    if not rule.branches:
        lines.append("  nothing rings: the rule ends at once as unreachable")
    endings: dict[str, list[str]] = {}
    for reason in Reason:
        if reason is Reason.NO_ANSWER and rule.duration is None:
            continue  # rings until answered or the caller hangs up
        if reason is not Reason.UNREACHABLE and not rule.branches:
            continue
        later = next_rule(plan, index, reason)
        where = f"go to {plan.rules[later].name}" if later is not None else f"otherwise: {_otherwise(plan.otherwise)}"
        after = f" (after {_seconds(rule.duration)})" if reason is Reason.NO_ANSWER and rule.duration is not None else ""
        endings.setdefault(where, []).append(reason.value + after)
    for where, reasons in endings.items():
        said = reasons[0] if len(reasons) == 1 else ", ".join(reasons[:-1]) + " or " + reasons[-1]
        lines.append(f"  on {said}: {where}")
    return lines


def _refusal(config: Config, refusal: Refusal, dialled: str) -> str:
    text = f"refused: {refusal.status} {refusal.reason}"
    if refusal.status == 403:
        return text + ": external numbers may be dialled only by registered users (no calls out through the PBX)"
    if plain_number(dialled) is not None and not config.gateways:
        return text + f": {dialled} is no extension or number of ours, and no [[gateway]] is configured"
    return text + f": {dialled} is no user, extension or number of this PBX"


def explain(
    config: Config,
    *,
    dialled: str,
    caller: str | None,
    at: dt.datetime,
    registrations: Registrations,
    now: float,
    external_allowed: bool | None = None,
) -> str:
    """The plan for one call as text (see the module docstring).

    ``external_allowed`` defaults to whether the caller is one of our users
    (by name or extension): a registered user may dial out, a caller from
    outside may not (CONFIG.md, Semantics 6).
    """
    who = normalise_caller(caller)
    if external_allowed is None:
        external_allowed = who is not None and (
            config.user(who) is not None or config.user_by_extension(who) is not None
        )
    local = local_time(config, at)
    result = plan_call(config, dialled=dialled, caller=caller, at=at, registrations=registrations,
                       external_allowed=external_allowed, now=now)
    shown_caller = "anonymous" if who is None else who
    head = f"{dialled} ({result.target})" if isinstance(result, Plan) and not result.target.endswith(f" {dialled}") else dialled
    lines = [f"Call to {head} from {shown_caller}, {local:%a %Y-%m-%d %H:%M} {config.proxy.timezone}", ""]
    if isinstance(result, Refusal):
        lines.append(_refusal(config, result, dialled))
        return "\n".join(lines) + "\n"
    if result.notes:
        lines.append("Rules that do not apply:")
        lines.extend(f"  {note}" for note in result.notes)
        lines.append("")
    if not result.rules:
        lines.append("No rule applies.")
    for index in range(len(result.rules)):
        lines.extend(_rule_lines(result, index))
        lines.append("")
    lines.append(f"otherwise: {_otherwise(result.otherwise)}")
    return "\n".join(lines) + "\n"
