"""proxy.toml: what loads, the defaults, the model and its lookups."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from sipfork.config import Config, ConfigError, Listen, Target, load_config, parse_config
from sipfork.routing.plan import ALL_REASONS, Hop, Reason

REPO = Path(__file__).resolve().parents[2]

FULL = """\
[proxy]
domain = "pbx.local"
listen = ["udp:127.0.0.1:5060", "tcp:[::1]:5070", "udp:localhost:5062"]
data_dir = "state"
timezone = "Europe/Berlin"
ring_time = 25
digest_algorithms = ["md5"]
workers = 2

[[user]]
name = "alice"
password = "alice-secret"
extension = "11"
digest_algorithms = ["MD5", "SHA-256"]

[[user]]
name = "bob"
password = "bob-secret"

[[group]]
name = "office"
members = ["alice", "bob"]

[[gateway]]
name = "trunk"
uri = "sip:127.0.0.1:5080"
username = "pbx"
password = "trunk-secret"
inbound_from = ["127.0.0.1", "::1"]

[[gateway]]
name = "trunk2"
uri = "sip:pbx@[::1]:5090;transport=TCP"

[[number]]
number = "+49 221 669 669 66"
aliases = ["022166966966"]
otherwise = "sip:mailbox@localhost:5091;transport=tcp"

[[number.forwarding]]
type = "schedule"
schedule = ["mon-fri 08:00-18:00"]
callers = ["+49170*", "anonymous", "bob"]
on = ["no-answer", "busy"]
ringing = "parallel"
duration = 20
targets = ["alice", "user:bob", "group:office", "+491701234567", "tel:+491709",
           { target = "0170 7654321", gateway = "trunk2", delay = 5, duration = 10 },
           "sip:ivr@127.0.0.1:5099"]

[[number.forwarding]]
type = "date"
dates = ["2026-12-24", "2026-12-25..2026-12-26"]
ringing = "sequential"
duration = "unlimited"
targets = [{ target = "11", duration = 15 }, "bob"]

[[number]]
number = "+4930123"
otherwise = "busy"

[[number.forwarding]]
targets = ["bob"]
"""


@pytest.fixture(scope="module")
def config() -> Config:
    return parse_config(FULL, path=Path("/etc/sipfork/proxy.toml"))


def test_proxy_settings(config: Config) -> None:
    proxy = config.proxy
    assert proxy.domain == "pbx.local"
    assert proxy.listen == (
        Listen(transport="udp", host="127.0.0.1", port=5060),
        Listen(transport="tcp", host="::1", port=5070),
        Listen(transport="udp", host="127.0.0.1", port=5062),
    )
    assert str(proxy.listen[1]) == "tcp:[::1]:5070"
    assert proxy.data_dir == Path("/etc/sipfork/state")
    assert proxy.timezone == "Europe/Berlin"
    assert proxy.ring_time == 25
    assert proxy.digest_algorithms == ("MD5",)
    assert proxy.workers == 2
    assert config.path == Path("/etc/sipfork/proxy.toml")


def test_users_groups_gateways(config: Config) -> None:
    alice = config.user("alice")
    assert alice is not None and alice.extension == "11"
    assert alice.digest_algorithms == ("MD5", "SHA-256")
    assert config.user("bob").digest_algorithms is None  # type: ignore[union-attr]
    assert config.user_by_extension("11") is alice
    assert config.user_by_extension("12") is None
    assert config.user("carol") is None
    assert config.group("office").members == ("alice", "bob")  # type: ignore[union-attr]
    trunk = config.gateway("trunk")
    assert trunk is not None
    assert (trunk.host, trunk.port, trunk.transport) == ("127.0.0.1", 5080, "udp")
    assert (trunk.username, trunk.password) == ("pbx", "trunk-secret")
    assert trunk.inbound_from == ("127.0.0.1", "::1")
    trunk2 = config.gateway("trunk2")
    assert trunk2 is not None
    assert (trunk2.host, trunk2.port, trunk2.transport) == ("::1", 5090, "tcp")
    assert trunk2.username is None and trunk2.inbound_from == ()


def test_numbers_and_lookup(config: Config) -> None:
    number = config.number("+4922166966966")
    assert number is not None
    assert number.number == "+4922166966966"  # written with spaces, kept plain
    assert config.number("022166966966") is number
    assert config.number("+4930123").otherwise == 486  # type: ignore[union-attr]
    assert config.number("4922166966966") is None  # exact only
    assert number.otherwise == Target(
        kind="uri", value="sip:mailbox@localhost:5091;transport=tcp",
        text="sip:mailbox@localhost:5091;transport=tcp",
        hop=Hop(host="127.0.0.1", port=5091, transport="tcp"),
    )


def test_forwardings(config: Config) -> None:
    number = config.number("+4922166966966")
    assert number is not None
    first, second = number.forwardings
    assert first.index == 0 and first.line == 40
    assert first.name == "rule 1 (schedule mon-fri 08:00-18:00, callers +49170* anonymous bob)"
    assert first.on == frozenset({Reason.NO_ANSWER, Reason.BUSY})
    assert first.duration == 20
    kinds = [(t.kind, t.value, t.gateway) for t in first.targets]
    assert kinds == [
        ("user", "alice", None), ("user", "bob", None), ("group", "office", None),
        ("external", "+491701234567", "trunk"), ("external", "+491709", "trunk"),
        ("external", "01707654321", "trunk2"), ("uri", "sip:ivr@127.0.0.1:5099", None),
    ]
    assert (first.targets[5].delay, first.targets[5].duration) == (5, 10)
    assert second.type == "date" and second.ringing == "sequential" and second.duration is None
    assert [d.first for d in second.dates] == [dt.date(2026, 12, 24), dt.date(2026, 12, 25)]
    assert second.targets[0].kind == "user" and second.targets[0].value == "alice"  # extension 11
    assert second.name == "rule 2 (date 2026-12-24, 2026-12-25..2026-12-26)"


def test_defaults() -> None:
    config = parse_config(
        '[proxy]\ndomain = "pbx.local"\n[[user]]\nname = "a"\npassword = "x"\n'
        '[[number]]\nnumber = "100"\n[[number.forwarding]]\ntargets = ["a"]\n'
    )
    proxy = config.proxy
    assert proxy.listen == (
        Listen(transport="udp", host="127.0.0.1", port=5060),
        Listen(transport="tcp", host="127.0.0.1", port=5060),
    )
    assert proxy.data_dir == Path.cwd() / "var"
    assert proxy.ring_time == 30
    assert proxy.digest_algorithms == ("SHA-256", "MD5")
    assert proxy.workers == 1
    assert proxy.timezone  # the machine's zone, or UTC
    number = config.numbers[0]
    assert number.otherwise == 480
    rule = number.forwardings[0]
    assert (rule.type, rule.ringing, rule.duration, rule.on, rule.callers) == (
        "always", "parallel", 30, ALL_REASONS, ()
    )


def test_workers_auto() -> None:
    config = parse_config('[proxy]\ndomain = "pbx.local"\nworkers = "auto"\n')
    assert config.proxy.workers >= 1


def test_default_proxy_toml_is_valid() -> None:
    config = load_config(REPO / "proxy.toml")
    assert config.proxy.domain == "pbx.local"
    assert [u.name for u in config.users] == ["alice", "bob", "carol"]
    assert [u.extension for u in config.users] == ["11", "12", "13"]
    assert config.group("office").members == ("alice", "bob")  # type: ignore[union-attr]
    number = config.number("022166966966")
    assert number is not None and number.number == "+4922166966966"
    assert number.otherwise == 480
    first, second = number.forwardings
    assert (first.ringing, first.duration, [t.text for t in first.targets]) == ("parallel", 20, ["group:office"])
    assert [t.value for t in second.targets] == ["carol"]
    assert config.proxy.data_dir == REPO / "var"


def test_example_office_toml_is_valid() -> None:
    config = load_config(REPO / "examples" / "office.toml")
    assert config.gateway("trunk").inbound_from == ("127.0.0.1",)  # type: ignore[union-attr]


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_config_is_frozen(config: Config) -> None:
    with pytest.raises(AttributeError):
        config.proxy = config.proxy  # type: ignore[misc]
