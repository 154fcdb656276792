"""The ring plan of one call: configuration + call facts + registrations → Plan.

Pure and cheap: it runs once per INVITE (CONFIG.md, Semantics 1-7).

What is dialled (the Request-URI user part, or a ``tel:`` number) is looked
up in this order: a user name; an extension; one of our numbers or aliases;
any other number (``+`` and digits, visual separators allowed) is external.
Anything else is ``Refusal(404)``.

Decisions beyond CONFIG.md:

- Branches of a user are that user's unexpired bindings, one per contact
  (when a contact appears twice, the binding that expires last wins), ordered
  by q (highest first), then contact: the plan does not depend on the order
  the registrations come in.
- Within a parallel rule a device named twice (``"alice"`` and
  ``"group:office"``) rings once, from the earliest start to the latest end of
  its mentions. Within a sequential rule a device rings only in the first
  target that names it; a target whose devices are all offline (or all rang
  before) is skipped and takes no time, so the caller never waits through a
  silent turn. Such offline targets are listed in ``Rule.missing``.
- A parallel target's own ``duration`` ends before the rule's when shorter;
  it never rings past the rule.
- An external number dialled directly leaves through the first gateway; with
  no gateway configured the call gets ``404 Not Found``, and when the caller
  may not dial out (calls from a trunk) ``403 Forbidden`` (checked first).
- ``Diversion`` on external legs of a forwarding names the number's main
  form (``number``, not the alias it was dialled as) at our domain.
- ``otherwise`` naming a user or a group becomes one more parallel rule
  (``ring_time`` long, reached on any reason) followed by the best response.
- ``at`` without a time zone is taken as wall-clock time in the configured
  zone (what ``sipfork explain --at`` passes).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping, Sequence

from attrs import frozen

from sipfork.bindings import Binding
from sipfork.config import Config, Forwarding, Number, Target
from sipfork.routing.callers import caller_matches, normalise_caller
from sipfork.routing.numbers import plain_number
from sipfork.routing.plan import ALL_REASONS, Branch, Hop, Otherwise, Plan, Reason, Refusal, Rule
from sipfork.routing.schedule import in_windows, on_dates

__all__ = ["plan_call", "next_rule", "local_time", "Decision", "decide"]

Registrations = Mapping[str, Sequence[Binding]]


def local_time(config: Config, at: dt.datetime) -> dt.datetime:
    """``at`` as wall-clock time in the configured zone."""
    zone = zoneinfo.ZoneInfo(config.proxy.timezone)
    if at.tzinfo is None:
        return at.replace(tzinfo=zone)
    return at.astimezone(zone)


def next_rule(plan: Plan, index: int, reason: Reason) -> int | None:
    """The rule a call falls through to when rule ``index`` ended for
    ``reason`` (the first later rule whose ``on`` holds it), or None when
    the plan's ``otherwise`` decides (CONFIG.md, Semantics 3)."""
    for later in range(index + 1, len(plan.rules)):
        if reason in plan.rules[later].on:
            return later
    return None


@frozen(kw_only=True)
class Decision:
    """Which forwarding rules of a number apply, in chain order, and why the others do not."""

    applying: tuple[Forwarding, ...]
    notes: tuple[str, ...]


def decide(number: Number, *, caller: str | None, local: dt.datetime) -> Decision:
    """CONFIG.md, Semantics 1: date rules of today first, then the others as
    written; a rule applies when its type holds and its filter matches."""
    today = local.date()
    who = normalise_caller(caller)
    dated: list[Forwarding] = []
    others: list[Forwarding] = []
    notes: list[str] = []
    for rule in number.forwardings:
        if rule.type == "date" and not on_dates(rule.dates, today):
            notes.append(f"{rule.name}: not today ({today.isoformat()})")
        elif rule.type == "schedule" and not in_windows(rule.schedule, local):
            notes.append(f"{rule.name}: not now ({local:%a %H:%M})")
        elif not caller_matches(rule.callers, who):
            shown = "anonymous caller" if who is None else f"caller {who}"
            notes.append(f"{rule.name}: {shown} not in filter")
        else:
            (dated if rule.type == "date" else others).append(rule)
    return Decision(applying=tuple(dated + others), notes=tuple(notes))


def plan_call(
    config: Config,
    *,
    dialled: str,
    caller: str | None,
    at: dt.datetime,
    registrations: Registrations,
    external_allowed: bool,
    now: float,
) -> Plan | Refusal:
    """The ring plan for a call to ``dialled`` (see the module docstring)."""
    text = dialled[4:] if dialled[:4].lower() == "tel:" else dialled
    user = config.user(text)
    if user is None:
        digits = plain_number(text)
        if digits is None:
            return Refusal(status=404, reason="Not Found")
        user = config.user_by_extension(digits)
        if user is None:
            number = config.number(digits)
            if number is not None:
                return _number_plan(config, number, caller, at, registrations, now)
            if not external_allowed:
                return Refusal(status=403, reason="Forbidden")
            if not config.gateways:
                return Refusal(status=404, reason="Not Found")
            branch = _external(config, config.gateways[0].name, digits, diverted_from=None)
            rule = Rule(name=branch.label, ringing="parallel", branches=(branch,), duration=None)
            return Plan(target=f"external {digits}", rules=(rule,), otherwise=Otherwise())
    devices = _devices(user.name, registrations, now)
    known = _USER_PLANS.get(user.name)
    if known is not None and known[0] is config and known[1] is devices:
        return known[2]  # plans are immutable: the same calls share one
    rule = Rule(
        name=user.name,
        ringing="parallel",
        branches=devices,
        duration=float(config.proxy.ring_time),
        missing=() if devices else (user.name,),
    )
    plan = Plan(target=f"user {user.name}", rules=(rule,), otherwise=Otherwise())
    _remember(_USER_PLANS, user.name, (config, devices, plan))
    return plan


# What a call to a user works out, kept while its inputs are the same objects
# (a call to a user is the common case and happens many times a second):
# user -> (config, devices, plan), and user -> (the registrations' bindings,
# from, until, devices): the devices are those of these bindings unexpired
# from ``from`` until ``until``. Bounded.
_USER_PLANS: dict[str, tuple[Config, tuple[Branch, ...], Plan]] = {}
_USER_DEVICES: dict[str, tuple[object, float, float, tuple[Branch, ...]]] = {}
_MEMO_LIMIT = 4096


def _remember(memo: dict, key: str, value: object) -> None:  # type: ignore[type-arg]
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value


# ---------------------------------------------------------------- numbers


def _number_plan(config: Config, number: Number, caller: str | None, at: dt.datetime,
                 registrations: Registrations, now: float) -> Plan:
    decision = decide(number, caller=caller, local=local_time(config, at))
    devices = _Devices(registrations, now)
    rules = [_rule(config, number, rule, devices) for rule in decision.applying]
    otherwise = number.otherwise
    if isinstance(otherwise, int):
        final = Otherwise(status=otherwise)
    elif otherwise.kind in ("user", "group"):
        branches = _expand(config, number, otherwise, devices)
        rules.append(Rule(
            name=f"otherwise ({otherwise.text})",
            ringing="parallel",
            branches=branches,
            duration=float(config.proxy.ring_time),
            on=ALL_REASONS,
            missing=() if branches else (otherwise.text,),
        ))
        final = Otherwise()
    else:
        branches = _expand(config, number, otherwise, devices)
        final = Otherwise(branch=branches[0])
    return Plan(target=f"number {number.number}", rules=tuple(rules), otherwise=final, notes=decision.notes)


def _rule(config: Config, number: Number, forwarding: Forwarding, devices: _Devices) -> Rule:
    if forwarding.ringing == "sequential":
        return _sequential(config, number, forwarding, devices)
    limit = forwarding.duration
    branches: dict[str, Branch] = {}
    missing: list[str] = []
    for target in forwarding.targets:
        expanded = _expand(config, number, target, devices)
        missing.extend(_offline(config, target, expanded, devices))
        if not expanded:
            continue
        start = float(target.delay)
        if limit is not None and start >= limit:
            continue
        end = None if target.duration is None else start + target.duration
        if limit is not None and end is not None:
            end = min(end, float(limit))
        for branch in expanded:
            earlier = branches.get(branch.key)
            if earlier is not None:
                earlier_end = None if earlier.duration is None else earlier.start + earlier.duration
                merged_end = None if end is None or earlier_end is None else max(end, earlier_end)
                start_ = min(start, earlier.start)
                branches[branch.key] = _placed(earlier, start_, None if merged_end is None else merged_end - start_)
            else:
                branches[branch.key] = _placed(branch, start, None if end is None else end - start)
    return Rule(
        name=forwarding.name,
        ringing="parallel",
        branches=tuple(branches.values()),
        duration=None if limit is None else float(limit),
        on=forwarding.on,
        missing=tuple(missing),
    )


def _sequential(config: Config, number: Number, forwarding: Forwarding, devices: _Devices) -> Rule:
    branches: dict[str, Branch] = {}
    missing: list[str] = []
    offset = 0.0
    unlimited = False
    for target in forwarding.targets:
        expanded = _expand(config, number, target, devices)
        missing.extend(_offline(config, target, expanded, devices))
        if not expanded:
            continue
        fresh = [branch for branch in expanded if branch.key not in branches]
        if not fresh or unlimited:
            continue
        duration = target.duration if target.duration is not None else forwarding.duration
        for branch in fresh:
            branches[branch.key] = _placed(branch, offset, None if duration is None else float(duration))
        if duration is None:
            unlimited = True
        else:
            offset += duration
    return Rule(
        name=forwarding.name,
        ringing="sequential",
        branches=tuple(branches.values()),
        duration=None if unlimited else offset,
        on=forwarding.on,
        missing=tuple(missing),
    )


# ---------------------------------------------------------------- targets → branches


class _Devices:
    """The devices of each user, worked out once per call."""

    __slots__ = ("registrations", "now", "known")

    def __init__(self, registrations: Registrations, now: float) -> None:
        self.registrations = registrations
        self.now = now
        self.known: dict[str, tuple[Branch, ...]] = {}

    def __call__(self, user: str) -> tuple[Branch, ...]:
        branches = self.known.get(user)
        if branches is None:
            branches = self.known[user] = _devices(user, self.registrations, self.now)
        return branches


def _expand(config: Config, number: Number, target: Target, devices: _Devices) -> tuple[Branch, ...]:
    if target.kind == "user":
        return devices(target.value)
    if target.kind == "group":
        group = config.group(target.value)
        seen: dict[str, Branch] = {}
        for member in group.members if group else ():
            for branch in devices(member):
                seen.setdefault(branch.key, branch)
        return tuple(seen.values())
    if target.kind == "external":
        return (_external(config, target.gateway or "", target.value, diverted_from=number.number),)
    hop = target.hop or Hop(host="127.0.0.1", port=5060, transport="udp")
    return (Branch(key=f"uri:{target.value}", label=target.value, request_uri=target.value, hop=hop),)


def _offline(config: Config, target: Target, expanded: tuple[Branch, ...], devices: _Devices) -> list[str]:
    """What of ``target`` has no registered device: the target itself when
    nothing of it rings, else the group members that are offline."""
    if not expanded:
        return [target.text]
    if target.kind != "group":
        return []
    group = config.group(target.value)
    return [f"{member} (in {target.text})" for member in (group.members if group else ()) if not devices(member)]


def _placed(branch: Branch, start: float, duration: float | None) -> Branch:
    """``branch`` ringing from ``start`` for ``duration`` (a plain constructor call: this is the hot path)."""
    if start == branch.start and duration == branch.duration:
        return branch
    return Branch(key=branch.key, label=branch.label, request_uri=branch.request_uri, hop=branch.hop,
                  start=start, duration=duration, gateway=branch.gateway, headers=branch.headers)


def _rank(binding: Binding) -> tuple[object, ...]:
    return (binding.expires_at, binding.registered_at, binding.q, binding.source_host,
            binding.source_port, binding.transport, binding.cseq, binding.call_id, binding.user_agent)


def _devices(user: str, registrations: Registrations, now: float) -> tuple[Branch, ...]:
    """Every unexpired binding of ``user`` as a branch, independent of input order."""
    bindings = registrations.get(user, ())
    known = _USER_DEVICES.get(user)
    # The same bindings (immutable: a tuple of the same objects, usually) and
    # none expired since: the same devices.
    if known is not None and known[1] <= now < known[2] and known[0] == bindings:
        return known[3]
    devices = _work_out_devices(user, bindings, now)
    if isinstance(bindings, tuple):
        expired = [b.expires_at for b in bindings if b.expires_at <= now]
        current = [b.expires_at for b in bindings if b.expires_at > now]
        _remember(_USER_DEVICES, user, (bindings, max(expired, default=float("-inf")),
                                        min(current, default=float("inf")), devices))
    return devices


def _work_out_devices(user: str, bindings: Sequence[Binding], now: float) -> tuple[Branch, ...]:
    current: dict[str, Binding] = {}
    for binding in bindings:
        if binding.expires_at <= now:
            continue
        other = current.get(binding.contact)
        if other is None or _rank(binding) > _rank(other):
            current[binding.contact] = binding
    ordered = sorted(current.values(), key=lambda b: (-b.q, b.contact))
    return tuple(
        Branch(
            key=f"contact:{user}:{b.contact}",
            label=f"{user} ({b.contact})",
            request_uri=b.contact,
            hop=b.hop,
        )
        for b in ordered
    )


def _external(config: Config, gateway_name: str, number: str, *, diverted_from: str | None) -> Branch:
    gateway = config.gateway(gateway_name) or config.gateways[0]
    host = f"[{gateway.host}]" if ":" in gateway.host else gateway.host
    uri = f"sip:{number}@{host}:{gateway.port}"
    if gateway.transport != "udp":
        uri += f";transport={gateway.transport}"
    headers: tuple[tuple[str, str], ...] = ()
    if diverted_from is not None:
        # RFC 5806: the number that was called, so the far end can show the original caller.
        headers = (("Diversion", f"<sip:{diverted_from}@{config.proxy.domain}>;reason=unconditional;counter=1"),)
    return Branch(
        key=f"external:{gateway.name}:{number}",
        label=f"{number} via {gateway.name}",
        request_uri=uri,
        hop=Hop(host=gateway.host, port=gateway.port, transport=gateway.transport),
        gateway=gateway.name,
        headers=headers,
    )
