"""The ring plan, case by case (CONFIG.md, Semantics 1-7)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from helpers_routing import CONFIG, NOW, binding

from sipfork.config import Config, parse_config
from sipfork.routing.plan import ALL_REASONS, Branch, Hop, Otherwise, Plan, Reason, Refusal, Rule
from sipfork.routing.planner import next_rule, plan_call

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY_10 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=BERLIN)
MONDAY_20 = dt.datetime(2026, 3, 2, 20, 0, tzinfo=BERLIN)
CHRISTMAS_10 = dt.datetime(2026, 12, 24, 10, 0, tzinfo=BERLIN)  # a Thursday


@pytest.fixture(scope="module")
def config() -> Config:
    return parse_config(CONFIG)


REGISTRATIONS = {
    "alice": [binding("alice", 5062), binding("alice", 5063, expires_at=NOW)],  # the second has expired
    "bob": [binding("bob", 5064)],
    "carol": [binding("carol", 5066, transport="tcp")],
}


def plan(config: Config, dialled: str, *, caller: str | None = "+4930555", at: dt.datetime = MONDAY_10,
         registrations: dict = REGISTRATIONS, external_allowed: bool = False) -> Plan | Refusal:  # type: ignore[type-arg]
    return plan_call(config, dialled=dialled, caller=caller, at=at, registrations=registrations,
                     external_allowed=external_allowed, now=NOW)


def device(user: str, port: int, *, start: float = 0.0, duration: float | None = None, transport: str = "udp") -> Branch:
    contact = f"sip:{user}@127.0.0.1:{port}"
    return Branch(key=f"contact:{user}:{contact}", label=f"{user} ({contact})", request_uri=contact,
                  hop=Hop(host="127.0.0.1", port=port, transport=transport), start=start, duration=duration)


# ---------------------------------------------------------------- users and extensions


@pytest.mark.parametrize("dialled", ["alice", "11"])
def test_user_and_extension(config: Config, dialled: str) -> None:
    assert plan(config, dialled) == Plan(
        target="user alice",
        rules=(Rule(name="alice", ringing="parallel", branches=(device("alice", 5062),), duration=30),),
        otherwise=Otherwise(),
    )


def test_user_without_devices(config: Config) -> None:
    result = plan(config, "bob", registrations={})
    assert isinstance(result, Plan)
    assert result.rules[0].branches == () and result.rules[0].missing == ("bob",)


def test_every_unexpired_device_of_a_user_by_q(config: Config) -> None:
    registrations = {"alice": [binding("alice", 5070, q=0.5), binding("alice", 5071, q=0.9), binding("alice", 5072, q=0.9)]}
    result = plan(config, "alice", registrations=registrations)
    assert isinstance(result, Plan)
    assert [b.hop.port for b in result.rules[0].branches] == [5071, 5072, 5070]


@pytest.mark.parametrize("dialled", ["dave", "sip:x", "", "+4922166966966x", "alice smith"])
def test_unknown_is_404(config: Config, dialled: str) -> None:
    assert plan(config, dialled) == Refusal(status=404, reason="Not Found")


# ---------------------------------------------------------------- external numbers dialled directly


def test_external_allowed_goes_through_the_first_gateway(config: Config) -> None:
    result = plan(config, "tel:+49 30 123456", external_allowed=True)
    branch = Branch(key="external:trunk:+4930123456", label="+4930123456 via trunk",
                    request_uri="sip:+4930123456@127.0.0.1:5080", hop=Hop(host="127.0.0.1", port=5080, transport="udp"),
                    gateway="trunk")
    assert result == Plan(
        target="external +4930123456",
        rules=(Rule(name="+4930123456 via trunk", ringing="parallel", branches=(branch,), duration=None),),
        otherwise=Otherwise(),
    )


def test_external_from_outside_is_forbidden(config: Config) -> None:
    assert plan(config, "+4930123456", external_allowed=False) == Refusal(status=403, reason="Forbidden")


def test_external_without_gateway_is_404() -> None:
    config = parse_config('[proxy]\ndomain = "pbx.local"\n')
    assert plan(config, "+4930123456", external_allowed=True) == Refusal(status=404, reason="Not Found")
    assert plan(config, "+4930123456", external_allowed=False) == Refusal(status=403, reason="Forbidden")


# ---------------------------------------------------------------- numbers: which rules


def names(result: Plan | Refusal) -> list[str]:
    assert isinstance(result, Plan)
    return [rule.name for rule in result.rules]


def test_office_hours_chain(config: Config) -> None:
    result = plan(config, "022166966966")
    assert names(result) == ["rule 2 (schedule mon-fri 08:00-18:00)", "rule 3 (always)"]
    assert isinstance(result, Plan)
    assert result.target == "number +4922166966966"
    assert result.otherwise == Otherwise(status=480)
    assert result.notes == (
        "rule 1 (always, callers anonymous): caller +4930555 not in filter",
        "rule 4 (date 2026-12-24..2026-12-26, callers +49*): not today (2026-03-02)",
    )


def test_evening_skips_the_schedule(config: Config) -> None:
    result = plan(config, "+4922166966966", at=MONDAY_20)
    assert names(result) == ["rule 3 (always)"]
    assert isinstance(result, Plan)
    assert "rule 2 (schedule mon-fri 08:00-18:00): not now (Mon 20:00)" in result.notes


def test_anonymous_filter(config: Config) -> None:
    assert names(plan(config, "022166966966", caller=None)) == [
        "rule 1 (always, callers anonymous)", "rule 2 (schedule mon-fri 08:00-18:00)", "rule 3 (always)",
    ]


def test_date_rules_come_first_on_their_days(config: Config) -> None:
    assert names(plan(config, "022166966966", at=CHRISTMAS_10)) == [
        "rule 4 (date 2026-12-24..2026-12-26, callers +49*)",
        "rule 2 (schedule mon-fri 08:00-18:00)",
        "rule 3 (always)",
    ]
    # the date rule's filter still applies
    result = plan(config, "022166966966", at=CHRISTMAS_10, caller="0221555")
    assert names(result)[0] == "rule 2 (schedule mon-fri 08:00-18:00)"
    assert isinstance(result, Plan)
    assert "rule 4 (date 2026-12-24..2026-12-26, callers +49*): caller 0221555 not in filter" in result.notes


@pytest.mark.parametrize(
    ("at", "applies"),
    [
        (dt.datetime(2026, 3, 2, 7, 0, tzinfo=dt.timezone.utc), True),  # 08:00 in Berlin (CET)
        (dt.datetime(2026, 3, 2, 6, 59, tzinfo=dt.timezone.utc), False),
        (dt.datetime(2026, 7, 6, 6, 0, tzinfo=dt.timezone.utc), True),  # 08:00 in Berlin (CEST)
        (dt.datetime(2026, 7, 6, 16, 0, tzinfo=dt.timezone.utc), False),  # 18:00 CEST
        (dt.datetime(2026, 3, 2, 9, 0), True),  # naive: Berlin wall-clock time
        (dt.datetime(2026, 3, 6, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-10))), False),  # Saturday in Berlin
    ],
)
def test_schedule_uses_the_configured_zone(config: Config, at: dt.datetime, applies: bool) -> None:
    assert ("rule 2 (schedule mon-fri 08:00-18:00)" in names(plan(config, "022166966966", at=at))) is applies


# ---------------------------------------------------------------- numbers: what rings


def test_parallel_rule_branches(config: Config) -> None:
    result = plan(config, "022166966966")
    assert isinstance(result, Plan)
    rule = result.rules[0]
    diversion = (("Diversion", "<sip:+4922166966966@pbx.local>;reason=unconditional;counter=1"),)
    mobile = Branch(key="external:trunk:+491701234567", label="+491701234567 via trunk",
                    request_uri="sip:+491701234567@127.0.0.1:5080",
                    hop=Hop(host="127.0.0.1", port=5080, transport="udp"), start=10.0, gateway="trunk",
                    headers=diversion)
    assert rule == Rule(
        name="rule 2 (schedule mon-fri 08:00-18:00)",
        ringing="parallel",
        # alice named twice (directly and through the group) rings once
        branches=(device("alice", 5062), device("bob", 5064), mobile,
                  device("carol", 5066, duration=5.0, transport="tcp")),
        duration=20.0,
        on=ALL_REASONS,
    )


def test_sequential_rule_branches(config: Config) -> None:
    result = plan(config, "022166966966")
    assert isinstance(result, Plan)
    rule = result.rules[1]
    assert rule.ringing == "sequential"
    assert rule.on == frozenset({Reason.BUSY, Reason.NO_ANSWER})
    assert [(b.key, b.start, b.duration) for b in rule.branches] == [
        ("contact:carol:sip:carol@127.0.0.1:5066", 0.0, 15.0),
        ("contact:bob:sip:bob@127.0.0.1:5064", 15.0, 10.0),
        ("external:trunk2:+491709999", 25.0, 15.0),
    ]
    assert rule.duration == 40.0
    external = rule.branches[2]
    assert external.request_uri == "sip:+491709999@[::1]:5082;transport=tcp"
    assert external.hop == Hop(host="::1", port=5082, transport="tcp")
    assert external.gateway == "trunk2"


def test_sequential_skips_targets_without_devices(config: Config) -> None:
    result = plan(config, "022166966966", registrations={"bob": [binding("bob", 5064)]})
    assert isinstance(result, Plan)
    rule = result.rules[1]
    assert [(b.key, b.start, b.duration) for b in rule.branches] == [
        ("contact:bob:sip:bob@127.0.0.1:5064", 0.0, 10.0),
        ("external:trunk2:+491709999", 10.0, 15.0),
    ]
    assert rule.missing == ("carol",) and rule.duration == 25.0
    assert result.rules[0].missing == ("alice", "alice (in group:office)", "carol")


def test_same_device_has_the_same_key_in_every_rule(config: Config) -> None:
    result = plan(config, "022166966966")
    assert isinstance(result, Plan)
    first = {b.key for b in result.rules[0].branches}
    second = {b.key for b in result.rules[1].branches}
    assert first & second == {"contact:bob:sip:bob@127.0.0.1:5064", "contact:carol:sip:carol@127.0.0.1:5066"}


def test_uri_target(config: Config) -> None:
    result = plan(config, "022166966966", caller=None)
    assert isinstance(result, Plan)
    assert result.rules[0].branches == (
        Branch(key="uri:sip:mailbox@127.0.0.1:5090", label="sip:mailbox@127.0.0.1:5090",
               request_uri="sip:mailbox@127.0.0.1:5090", hop=Hop(host="127.0.0.1", port=5090, transport="udp")),
    )
    assert result.rules[0].duration is None


def test_nobody_registered(config: Config) -> None:
    result = plan(config, "022166966966", registrations={})
    assert isinstance(result, Plan)
    assert [b.key for b in result.rules[0].branches] == ["external:trunk:+491701234567"]
    assert result.rules[0].missing == ("alice", "group:office", "carol")


@pytest.mark.parametrize(
    ("dialled", "otherwise"),
    [
        ("+4930100", Otherwise(status=486)),
        ("+4930200", Otherwise(status=603)),
        ("+4930300", Otherwise(branch=Branch(
            key="external:trunk:+491701234567", label="+491701234567 via trunk",
            request_uri="sip:+491701234567@127.0.0.1:5080", hop=Hop(host="127.0.0.1", port=5080, transport="udp"),
            gateway="trunk",
            headers=(("Diversion", "<sip:+4930300@pbx.local>;reason=unconditional;counter=1"),)))),
    ],
)
def test_otherwise(config: Config, dialled: str, otherwise: Otherwise) -> None:
    result = plan(config, dialled)
    assert isinstance(result, Plan)
    assert result.rules == () and result.otherwise == otherwise


def test_otherwise_group_becomes_a_last_rule(config: Config) -> None:
    result = plan(config, "+4930400")
    assert isinstance(result, Plan)
    assert result.rules == (
        Rule(name="otherwise (group:office)", ringing="parallel",
             branches=(device("alice", 5062), device("bob", 5064)), duration=30.0),
    )
    assert result.otherwise == Otherwise()


# ---------------------------------------------------------------- falling through


def test_next_rule_follows_on(config: Config) -> None:
    result = plan(config, "022166966966", caller=None)
    assert isinstance(result, Plan)
    # rule 1 (anonymous) → rule 2 on anything; rule 2 → rule 3 only on busy / no-answer
    assert next_rule(result, 0, Reason.UNREACHABLE) == 1
    assert next_rule(result, 1, Reason.NO_ANSWER) == 2
    assert next_rule(result, 1, Reason.BUSY) == 2
    assert next_rule(result, 1, Reason.UNREACHABLE) is None  # → otherwise
    assert next_rule(result, 2, Reason.NO_ANSWER) is None
