"""Planner invariants over generated configurations, calls and registrations."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

from helpers_routing import NOW, binding
from hypothesis import given, settings
from hypothesis import strategies as st

from sipfork.bindings import Binding
from sipfork.config import Config, Forwarding, parse_config
from sipfork.routing.callers import caller_matches, normalise_caller
from sipfork.routing.plan import Plan, Refusal
from sipfork.routing.planner import local_time, plan_call
from sipfork.routing.schedule import in_windows, on_dates

HEAD = """\
[proxy]
domain = "pbx.local"
timezone = "Europe/Berlin"

[[user]]
name = "alice"
password = "a"
extension = "11"

[[user]]
name = "bob"
password = "b"

[[user]]
name = "carol"
password = "c"

[[user]]
name = "dave"
password = "d"

[[group]]
name = "office"
members = ["alice", "bob"]

[[group]]
name = "all"
members = ["dave", "carol", "bob", "alice"]

[[gateway]]
name = "trunk"
uri = "sip:127.0.0.1:5080"

[[gateway]]
name = "trunk2"
uri = "sip:127.0.0.2:5082;transport=tcp"

[[number]]
number = "+4922166966966"
otherwise = "unavailable"
"""

USERS = ("alice", "bob", "carol", "dave")
TARGETS = ("alice", "bob", "carol", "11", "group:office", "group:all", "+491701234567", "+4930111",
           "sip:mailbox@127.0.0.1:5090")
CALLERS = ("anonymous", "+49170*", "+4930*", "0170*", "+491701234567", "alice", "*")
DAYS = ("mon-fri", "sat", "sun", "mon,wed", "fri-mon", "mon-sun", "tue")


def toml_value(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


@st.composite
def windows(draw: st.DrawFn) -> str:
    start = draw(st.integers(0, 23 * 60 + 59))
    end = draw(st.integers(1, 24 * 60).filter(lambda m: m != start))
    return f"{draw(st.sampled_from(DAYS))} {start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


@st.composite
def forwardings(draw: st.DrawFn) -> dict[str, object]:
    kind = draw(st.sampled_from(["always", "schedule", "date"]))
    rule: dict[str, object] = {"type": kind}
    if kind == "schedule":
        rule["schedule"] = draw(st.lists(windows(), min_size=1, max_size=3, unique=True))
    if kind == "date":
        days = draw(st.lists(st.integers(20, 31), min_size=1, max_size=3, unique=True))
        rule["dates"] = [f"2026-12-{day:02d}" for day in days]
    if draw(st.booleans()):
        rule["callers"] = draw(st.lists(st.sampled_from(CALLERS), min_size=1, max_size=3, unique=True))
    if draw(st.booleans()):
        rule["on"] = draw(st.lists(st.sampled_from(["no-answer", "busy", "unreachable"]), min_size=1, unique=True))
    ringing = draw(st.sampled_from(["parallel", "sequential"]))
    duration = draw(st.one_of(st.integers(1, 60), st.just("unlimited")))
    rule["ringing"] = ringing
    rule["duration"] = duration
    names = draw(st.lists(st.sampled_from(TARGETS), min_size=1, max_size=4, unique_by=lambda t: "alice" if t == "11" else t))
    targets: list[object] = []
    for index, name in enumerate(names):
        options: dict[str, object] = {}
        if name.startswith("+") and draw(st.booleans()):
            options["gateway"] = draw(st.sampled_from(["trunk", "trunk2"]))
        if ringing == "parallel" and draw(st.booleans()):
            limit = duration - 1 if isinstance(duration, int) else 60
            options["delay"] = draw(st.integers(0, limit))
        last = index == len(names) - 1
        if (ringing == "sequential" and duration == "unlimited" and not last) or draw(st.booleans()):
            options["duration"] = draw(st.integers(1, 60))
        targets.append({"target": name, **options} if options else name)
    rule["targets"] = targets
    return rule


@st.composite
def configs(draw: st.DrawFn) -> Config:
    rules = draw(st.lists(forwardings(), max_size=5))
    text = HEAD + "".join(
        "\n[[number.forwarding]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in rule.items()) for rule in rules
    )
    return parse_config(text)


@st.composite
def registrations(draw: st.DrawFn) -> dict[str, list[Binding]]:
    result: dict[str, list[Binding]] = {}
    for user in USERS:
        ports = draw(st.lists(st.integers(5060, 5066), max_size=4))
        result[user] = [
            binding(user, port, expires_at=NOW + draw(st.integers(-5, 5)), q=draw(st.sampled_from([0.5, 1.0])))
            for port in ports
        ]
    return result


moments = st.builds(
    lambda day, minute, zone: dt.datetime(2026, 12, day, tzinfo=ZoneInfo(zone)) + dt.timedelta(minutes=minute),
    st.integers(19, 31), st.integers(0, 24 * 60 - 1), st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
)
callers = st.sampled_from([None, "anonymous", "+491701234567", "+4930555", "01701234567", "alice", "bob"])
dialled = st.sampled_from(["+4922166966966", "alice", "11", "group:office", "+4930999"])


def plan(config: Config, caller: str | None, at: dt.datetime, regs: dict[str, list[Binding]],
         to: str = "+4922166966966") -> Plan:
    result = plan_call(config, dialled=to, caller=caller, at=at, registrations=regs, external_allowed=True, now=NOW)
    assert isinstance(result, Plan)
    return result


def forwarding_of(config: Config, name: str) -> Forwarding:
    return next(f for f in config.numbers[0].forwardings if f.name == name)


COMMON = settings(max_examples=150, deadline=None)


@COMMON
@given(configs(), callers, moments, registrations())
def test_no_branch_starts_or_rings_past_its_rule(config: Config, caller: str | None, at: dt.datetime,
                                                 regs: dict[str, list[Binding]]) -> None:
    for rule in plan(config, caller, at, regs).rules:
        for branch in rule.branches:
            assert branch.start >= 0
            if branch.duration is not None:
                assert branch.duration > 0
            if rule.duration is not None:
                assert branch.start < rule.duration
                assert branch.duration is None or branch.start + branch.duration <= rule.duration


@COMMON
@given(configs(), callers, moments, registrations())
def test_sequential_targets_never_overlap(config: Config, caller: str | None, at: dt.datetime,
                                          regs: dict[str, list[Binding]]) -> None:
    for rule in plan(config, caller, at, regs).rules:
        if rule.ringing != "sequential":
            continue
        turns = sorted({(b.start, b.duration) for b in rule.branches}, key=lambda t: t[0])
        assert len({start for start, _ in turns}) == len(turns)  # one length per turn
        for (start, duration), (next_start, _) in zip(turns, turns[1:]):
            assert duration is not None and start + duration <= next_start
        if turns and rule.duration is not None:
            last_start, last_duration = turns[-1]
            assert last_duration is not None and last_start + last_duration == rule.duration


@COMMON
@given(configs(), callers, moments, registrations())
def test_only_applying_rules_appear(config: Config, caller: str | None, at: dt.datetime,
                                    regs: dict[str, list[Binding]]) -> None:
    result = plan(config, caller, at, regs)
    local = local_time(config, at)
    chosen = [forwarding_of(config, rule.name) for rule in result.rules]
    for rule in config.numbers[0].forwardings:
        applies = (
            caller_matches(rule.callers, normalise_caller(caller))
            and (rule.type != "schedule" or in_windows(rule.schedule, local))
            and (rule.type != "date" or on_dates(rule.dates, local.date()))
        )
        assert (rule in chosen) is applies
    assert len(result.notes) == len(config.numbers[0].forwardings) - len(chosen)


@COMMON
@given(configs(), callers, moments, registrations())
def test_date_rules_come_first_then_written_order(config: Config, caller: str | None, at: dt.datetime,
                                                  regs: dict[str, list[Binding]]) -> None:
    chosen = [forwarding_of(config, rule.name) for rule in plan(config, caller, at, regs).rules]
    kinds = [rule.type == "date" for rule in chosen]
    assert kinds == sorted(kinds, reverse=True)
    dated = [rule.index for rule in chosen if rule.type == "date"]
    others = [rule.index for rule in chosen if rule.type != "date"]
    assert dated == sorted(dated) and others == sorted(others)


@COMMON
@given(configs(), callers, moments, registrations(), st.randoms(use_true_random=False), dialled)
def test_registration_order_does_not_matter(config: Config, caller: str | None, at: dt.datetime,
                                            regs: dict[str, list[Binding]], rnd: random.Random, to: str) -> None:
    shuffled_users = list(regs.items())
    rnd.shuffle(shuffled_users)
    shuffled = {user: rnd.sample(bindings, len(bindings)) for user, bindings in shuffled_users}
    first = plan_call(config, dialled=to, caller=caller, at=at, registrations=regs, external_allowed=True, now=NOW)
    second = plan_call(config, dialled=to, caller=caller, at=at, registrations=shuffled, external_allowed=True, now=NOW)
    assert first == second


@COMMON
@given(configs(), callers, moments, registrations())
def test_branches_are_sound(config: Config, caller: str | None, at: dt.datetime,
                            regs: dict[str, list[Binding]]) -> None:
    for rule in plan(config, caller, at, regs).rules:
        keys = [b.key for b in rule.branches]
        assert len(keys) == len(set(keys))  # a device rings once per rule
        for branch in rule.branches:
            if branch.key.startswith("external:"):
                gateway = config.gateway(branch.gateway or "")
                assert gateway is not None
                assert (branch.hop.host, branch.hop.port, branch.hop.transport) == (
                    gateway.host, gateway.port, gateway.transport)
                assert branch.headers[0][0] == "Diversion"
            else:
                assert branch.gateway is None
            if branch.key.startswith("contact:"):
                user = branch.key.split(":")[1]
                assert any(b.contact == branch.request_uri and b.expires_at > NOW for b in regs[user])


@COMMON
@given(configs(), callers, moments, registrations())
def test_parallel_branches_start_at_their_delay(config: Config, caller: str | None, at: dt.datetime,
                                                regs: dict[str, list[Binding]]) -> None:
    result = plan(config, caller, at, regs)
    for rule in result.rules:
        forwarding = forwarding_of(config, rule.name)
        if rule.ringing == "parallel":
            assert rule.duration == forwarding.duration
            delays = {t.delay for t in forwarding.targets}
            assert all(b.start in delays for b in rule.branches)


@settings(max_examples=100, deadline=None)
@given(callers, moments, registrations(), dialled)
def test_refusals_only_for_unknown(caller: str | None, at: dt.datetime, regs: dict[str, list[Binding]], to: str) -> None:
    config = parse_config(HEAD)
    result = plan_call(config, dialled=to, caller=caller, at=at, registrations=regs, external_allowed=False, now=NOW)
    if to == "group:office":
        assert result == Refusal(status=404, reason="Not Found")
    elif to == "+4930999":
        assert result == Refusal(status=403, reason="Forbidden")
    else:
        assert isinstance(result, Plan)
