"""Every mistake in proxy.toml is an error naming the key and the line."""

from __future__ import annotations

import pytest

from sipfork.config import ConfigError, parse_config

BASE = """\
[proxy]
domain = "pbx.local"
listen = ["udp:127.0.0.1:5060"]
timezone = "Europe/Berlin"

[[user]]
name = "alice"
password = "a"
extension = "11"

[[user]]
name = "bob"
password = "b"
extension = "12"

[[group]]
name = "office"
members = ["alice", "bob"]

[[gateway]]
name = "trunk"
uri = "sip:127.0.0.1:5080"

[[number]]
number = "+4922166966966"
aliases = ["022166966966"]
otherwise = "unavailable"

[[number.forwarding]]
type = "schedule"
schedule = ["mon-fri 08:00-18:00"]
ringing = "parallel"
duration = 20
targets = ["alice", "group:office", "+491701234567"]

[[number.forwarding]]
type = "date"
dates = ["2026-12-24"]
targets = ["bob"]
"""


def error_for(old: str, new: str, *, base: str = BASE) -> ConfigError:
    assert old in base, old
    with pytest.raises(ConfigError) as caught:
        parse_config(base.replace(old, new, 1), path="proxy.toml")  # type: ignore[arg-type]
    return caught.value


def test_base_is_valid() -> None:
    parse_config(BASE)


CASES = [
    # (replace, with, line, key, words in the message)
    ('"mon-fri 08:00-18:00"', '"mon-fry 8-18"', 31, "number[0].forwarding[0].schedule[0]",
     '"mon-fry 8-18" is not a weekday range with a time window like "mon-fri 08:00-18:00"'),
    ('"mon-fri 08:00-18:00"', '"mon-fri 8-18"', 31, "number[0].forwarding[0].schedule[0]", '"8-18" is not a time'),
    ('"mon-fri 08:00-18:00"', '"mon-fri 08:00-08:00"', 31, "number[0].forwarding[0].schedule[0]", "is empty"),
    ('"mon-fri 08:00-18:00"', '"mon-fri 08:00-25:00"', 31, "number[0].forwarding[0].schedule[0]", "not a time of day"),
    ('"mon-fri 08:00-18:00"', '"mon-fri"', 31, "number[0].forwarding[0].schedule[0]", "time window"),
    ('"mon-fri 08:00-18:00"', '"mon-fri 24:00-18:00"', 31, "number[0].forwarding[0].schedule[0]", "24:00 as an end"),
    ('schedule = ["mon-fri 08:00-18:00"]', "schedule = []", 31, "number[0].forwarding[0].schedule", "must not be empty"),
    ('dates = ["2026-12-24"]', 'dates = ["2026-12-24", "2026-12-20..2026-12-26"]', 38,
     "number[0].forwarding[1].dates", "overlaps"),
    ('dates = ["2026-12-24"]', 'dates = ["2026-12-26..2026-12-25"]', 38, "number[0].forwarding[1].dates[0]",
     "the range is empty"),
    ('dates = ["2026-12-24"]', 'dates = ["2026-02-30"]', 38, "number[0].forwarding[1].dates[0]", "not a day of the calendar"),
    ('dates = ["2026-12-24"]', 'dates = ["24.12.2026"]', 38, "number[0].forwarding[1].dates[0]", 'like "2026-12-24"'),
    ('dates = ["2026-12-24"]', 'dates = [2026-12-24]', 38, "number[0].forwarding[1].dates[0]", "expected a string, got a date"),
    ('type = "date"', 'type = "schedule"', 38, "number[0].forwarding[1].dates", 'belongs to type = "date"'),
    ('dates = ["2026-12-24"]\n', "", 36, "number[0].forwarding[1]", 'type = "date" needs "dates"'),
    ('type = "schedule"', 'type = "always"', 31, "number[0].forwarding[0].schedule", 'belongs to type = "schedule"'),
    ('type = "schedule"', 'type = "weekly"', 30, "number[0].forwarding[0].type", '"weekly" is not "always", "schedule" or "date"'),
    ('duration = 20', "duration = 0", 33, "number[0].forwarding[0].duration", "expected seconds from 1 to 600"),
    ('duration = 20', "duration = 601", 33, "number[0].forwarding[0].duration", 'or "unlimited", got 601'),
    ('duration = 20', 'duration = "forever"', 33, "number[0].forwarding[0].duration", 'got "forever"'),
    ('duration = 20', "duration = 20.5", 33, "number[0].forwarding[0].duration", "got a float 20.5"),
    ('duration = 20', "duration = true", 33, "number[0].forwarding[0].duration", "got a boolean True"),
    ('ringing = "parallel"', 'ringing = "serial"', 32, "number[0].forwarding[0].ringing", '"parallel" or "sequential"'),
    ('ringing = "parallel"', 'ringing = "parallel"\non = ["no-answer", "timeout"]', 33,
     "number[0].forwarding[0].on[1]", '"timeout" is not "no-answer", "busy" or "unreachable"'),
    ('ringing = "parallel"', 'ringing = "parallel"\non = []', 33, "number[0].forwarding[0].on", "must not be empty"),
    ('ringing = "parallel"', 'ringing = "parallel"\ncallers = ["+49 170*", "anonymus"]', 33,
     "number[0].forwarding[0].callers[1]", '"anonymus" is not a number, a prefix ending in "*", "anonymous" or a user name'),
    ('duration = 20', "duraton = 20", 33, "number[0].forwarding[0].duraton", 'unknown key "duraton" (did you mean "duration"?)'),
    ('"alice", "group:office"', '"alicia", "group:office"', 34, "number[0].forwarding[0].targets[0]", 'unknown user "alicia"'),
    ('"alice", "group:office"', '"office", "alice"', 34, "number[0].forwarding[0].targets[0]",
     'unknown user "office" (for the group write "group:office")'),
    ('"alice", "group:office"', '"alice", "group:sales"', 34, "number[0].forwarding[0].targets[1]", 'unknown group "sales"'),
    ('"alice", "group:office"', '"alice", "user:alice"', 34, "number[0].forwarding[0].targets[1]", "listed twice"),
    ('"alice", "group:office"', '"alice", "11"', 34, "number[0].forwarding[0].targets[1]", "listed twice"),
    ('"alice", "group:office"', '"alice", "022166966966"', 34, "number[0].forwarding[0].targets[1]",
     "one of our own numbers"),
    ('"alice", "group:office"', '"alice", "mailto:x@y"', 34, "number[0].forwarding[0].targets[1]", "is not a target"),
    ('"alice", "group:office"', '"alice", "sip:vm@mail.example.com"', 34, "number[0].forwarding[0].targets[1]",
     "sipfork does no DNS"),
    ('"alice", "group:office"', '"alice", "sips:vm@127.0.0.1"', 34, "number[0].forwarding[0].targets[1]", "TLS"),
    ('"alice", "group:office"', '{ target = "alice", gateway = "trunk" }', 34, "number[0].forwarding[0].targets[0].gateway",
     "external numbers only"),
    ('"+491701234567"]', '{ target = "+491701234567", gateway = "trunk9" }]', 34,
     "number[0].forwarding[0].targets[2].gateway", 'unknown gateway "trunk9"'),
    ('"+491701234567"]', '{ target = "+491701234567", delay = 20 }]', 34,
     "number[0].forwarding[0].targets[2].delay", "never rings: the rule rings for 20s"),
    ('"+491701234567"]', '{ target = "+491701234567", delay = -1 }]', 34,
     "number[0].forwarding[0].targets[2].delay", "from 0 to 600"),
    ('"+491701234567"]', '{ target = "+491701234567", duration = 0 }]', 34,
     "number[0].forwarding[0].targets[2].duration", "from 1 to 600"),
    ('"+491701234567"]', '{ target = "+491701234567", ring = 5 }]', 34,
     "number[0].forwarding[0].targets[2].ring", 'unknown key "ring"'),
    ('"+491701234567"]', '{ gateway = "trunk" }]', 34, "number[0].forwarding[0].targets[2]", 'missing key "target"'),
    ('"+491701234567"]', "42]", 34, "number[0].forwarding[0].targets[2]", "got an integer 42"),
    ('targets = ["alice", "group:office", "+491701234567"]', "targets = []", 34,
     "number[0].forwarding[0].targets", "at least one target"),
    ('targets = ["alice", "group:office", "+491701234567"]\n', "", 29, "number[0].forwarding[0]", 'missing key "targets"'),
    ('otherwise = "unavailable"', 'otherwise = "voicemail"', 27, "number[0].otherwise",
     'unknown user "voicemail"; or one of "unavailable", "busy", "decline"'),
    ('otherwise = "unavailable"', 'otherwise = 480', 27, "number[0].otherwise", "got an integer 480"),
    ('otherwise = "unavailable"', 'otherwise = { target = "sip:vm@127.0.0.1", delay = 5 }', 27,
     "number[0].otherwise.delay", 'unknown key "delay"'),
    ('aliases = ["022166966966"]', 'aliases = ["022166966966", "+49 221 66966966"]', 26, "number[0].aliases[1]",
     'is already number[0].number (line 25)'),
    ('aliases = ["022166966966"]', 'aliases = ["0221-abc"]', 26, "number[0].aliases[0]", "is not a phone number"),
    ('number = "+4922166966966"', "number = 4922166966966", 25, "number[0].number", "a number written as a string"),
    ('aliases = ["022166966966"]', 'aliases = ["12"]', 26, "number[0].aliases[0]",
     'also the extension of user "bob"'),
    ('name = "bob"', 'name = "alice"', 12, "user[1].name", 'duplicate user name "alice" (also user[0])'),
    ('extension = "12"', 'extension = "11"', 14, "user[1].extension", 'duplicate extension "11"'),
    ('extension = "12"', "extension = 12", 14, "user[1].extension", 'expected a string of digits like "11", got an integer 12'),
    ('extension = "12"', 'extension = "1a"', 14, "user[1].extension", "digits only"),
    ('name = "bob"', 'name = "2bob"', 12, "user[1].name", "start with a letter"),
    ('name = "bob"', 'name = "anonymous"', 12, "user[1].name", "reserved"),
    ('password = "b"', 'password = ""', 13, "user[1].password", "must not be empty"),
    ('password = "b"\n', "", 11, "user[1]", 'missing key "password"'),
    ('password = "b"', 'password = "b"\ndigest_algorithms = ["SHA-512-256"]', 14, "user[1].digest_algorithms[0]",
     "not supported"),
    ('password = "b"', 'password = "b"\nphone = "x"', 14, "user[1].phone", 'unknown key "phone"'),
    ('members = ["alice", "bob"]', 'members = ["alice", "carol"]', 18, "group[0].members[1]", 'unknown user "carol"'),
    ('members = ["alice", "bob"]', 'members = ["alice", "alice"]', 18, "group[0].members[1]", "listed twice"),
    ('members = ["alice", "bob"]', "members = []", 18, "group[0].members", "must not be empty"),
    ('uri = "sip:127.0.0.1:5080"', 'uri = "sip:trunk.example.com"', 22, "gateway[0].uri", "sipfork does no DNS"),
    ('uri = "sip:127.0.0.1:5080"', 'uri = "http://127.0.0.1"', 22, "gateway[0].uri", "is not a SIP URI"),
    ('uri = "sip:127.0.0.1:5080"', 'uri = "sip:127.0.0.1:5080;transport=sctp"', 22, "gateway[0].uri", "not udp or tcp"),
    ('uri = "sip:127.0.0.1:5080"', 'uri = "sip:::1:5080"', 22, "gateway[0].uri", ""),
    ('uri = "sip:127.0.0.1:5080"', 'uri = "sip:127.0.0.1:5080"\nusername = "pbx"', 20, "gateway[0]",
     '"password" is missing'),
    ('uri = "sip:127.0.0.1:5080"', 'uri = "sip:127.0.0.1:5080"\ninbound_from = ["provider"]', 23,
     "gateway[0].inbound_from[0]", "not an IP address"),
    ('listen = ["udp:127.0.0.1:5060"]', 'listen = ["127.0.0.1:5060"]', 3, "proxy.listen[0]", "transport:host:port"),
    ('listen = ["udp:127.0.0.1:5060"]', 'listen = ["sctp:127.0.0.1:5060"]', 3, "proxy.listen[0]", "transport:host:port"),
    ('listen = ["udp:127.0.0.1:5060"]', 'listen = ["udp:::1:5060"]', 3, "proxy.listen[0]", "IPv6 in brackets"),
    ('listen = ["udp:127.0.0.1:5060"]', 'listen = ["udp:127.0.0.1:70000"]', 3, "proxy.listen[0]", "out of range"),
    ('listen = ["udp:127.0.0.1:5060"]', 'listen = ["udp:pbx.example.com:5060"]', 3, "proxy.listen[0]", "no DNS"),
    ('listen = ["udp:127.0.0.1:5060"]', 'listen = ["udp:127.0.0.1:5060", "udp:127.0.0.1:5060"]', 3,
     "proxy.listen[1]", "listed twice"),
    ('listen = ["udp:127.0.0.1:5060"]', "listen = []", 3, "proxy.listen", "must not be empty"),
    ('listen = ["udp:127.0.0.1:5060"]', 'listen = "udp:127.0.0.1:5060"', 3, "proxy.listen", "expected an array of strings"),
    ('timezone = "Europe/Berlin"', 'timezone = "Europe/Bern"', 4, "proxy.timezone", "not a time zone name"),
    ('timezone = "Europe/Berlin"', 'ring_time = 0', 4, "proxy.ring_time", "from 1 to 600"),
    ('timezone = "Europe/Berlin"', 'workers = 0', 4, "proxy.workers", '"auto"'),
    ('timezone = "Europe/Berlin"', 'digest_algorithms = []', 4, "proxy.digest_algorithms", "must not be empty"),
    ('timezone = "Europe/Berlin"', 'digest_algorithms = ["MD5", "md5"]', 4, "proxy.digest_algorithms[1]", "listed twice"),
    ('timezone = "Europe/Berlin"', 'rign_time = 3', 4, "proxy.rign_time", 'did you mean "ring_time"'),
    ('domain = "pbx.local"', 'domain = "pbx local"', 2, "proxy.domain", "not a domain name"),
    ('domain = "pbx.local"\n', "", 1, "proxy", 'missing key "domain"'),
    ('[[group]]', "[[groups]]", 16, "groups", 'unknown key "groups"'),
    ('[[group]]', "[group]", 16, "group", "expected [[group]] tables"),
]


@pytest.mark.parametrize(("old", "new", "line", "key", "words"), CASES)
def test_error_names_key_and_line(old: str, new: str, line: int, key: str, words: str) -> None:
    error = error_for(old, new)
    first = str(error).splitlines()[0]
    assert first.startswith(f"proxy.toml:{line}: {key}"), str(error)
    assert words in first, str(error)
    assert error.line == line


def test_brief_example_message() -> None:
    base = BASE + '\n[[number.forwarding]]\ntype = "schedule"\nschedule = ["mon-fry 8-18"]\ntargets = ["bob"]\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(base, path="proxy.toml")  # type: ignore[arg-type]
    assert str(caught.value).startswith(
        'proxy.toml:43: number[0].forwarding[2].schedule[0]: "mon-fry 8-18" is not a weekday range '
        'with a time window like "mon-fri 08:00-18:00"'
    )


def test_missing_proxy_table() -> None:
    with pytest.raises(ConfigError, match=r"proxy: missing table \[proxy\]"):
        parse_config('[[user]]\nname = "a"\npassword = "b"\n')


def test_toml_syntax_error_names_the_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('[proxy]\ndomain = "pbx.local"\nring_time = = 3\n', path="p.toml")  # type: ignore[arg-type]
    assert str(caught.value).startswith("p.toml:3: not valid TOML")


def test_every_problem_is_reported() -> None:
    text = BASE.replace('name = "bob"', 'name = "alice"').replace('"mon-fri 08:00-18:00"', '"daily"')
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    keys = [problem.key for problem in caught.value.problems]
    assert "user[1].name" in keys and "number[0].forwarding[0].schedule[0]" in keys


def test_duplicate_number_across_numbers() -> None:
    text = BASE + '\n[[number]]\nnumber = "+4930"\naliases = ["0221 669 669 66"]\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text, path="proxy.toml")  # type: ignore[arg-type]
    assert str(caught.value).startswith('proxy.toml:43: number[1].aliases[0]: "0221 669 669 66" is already number[0].aliases[0]')


def test_external_target_needs_a_gateway() -> None:
    text = BASE.replace('[[gateway]]\nname = "trunk"\nuri = "sip:127.0.0.1:5080"\n', "")
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert 'targets[2]: "+491701234567" is an external number, but no [[gateway]] is configured' in str(caught.value)


def test_sequential_after_unlimited_never_rings() -> None:
    text = BASE.replace('ringing = "parallel"\nduration = 20', 'ringing = "sequential"\nduration = "unlimited"')
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert "targets[1]: \"group:office\" never rings" in str(caught.value)
    # with its own duration, the first target lets the next ones ring; the last may ring without limit
    text = BASE.replace('ringing = "parallel"\nduration = 20', 'ringing = "sequential"\nduration = "unlimited"').replace(
        '["alice", "group:office", "+491701234567"]',
        '[{ target = "alice", duration = 10 }, { target = "group:office", duration = 10 }, "+491701234567"]',
    )
    parse_config(text)


def test_delay_only_in_parallel_rules() -> None:
    text = BASE.replace('ringing = "parallel"', 'ringing = "sequential"').replace(
        '"+491701234567"]', '{ target = "+491701234567", delay = 5 }]'
    )
    with pytest.raises(ConfigError, match="delay applies to parallel ringing"):
        parse_config(text)


def test_line_numbers_in_multiline_arrays_and_strings() -> None:
    text = BASE.replace(
        'targets = ["alice", "group:office", "+491701234567"]',
        'targets = [\n  "alice",  # the boss\n  """group:office""",\n  { target = "+49170", gateway = "nope" },\n]',
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, path="proxy.toml")  # type: ignore[arg-type]
    assert str(caught.value).startswith('proxy.toml:37: number[0].forwarding[0].targets[2].gateway: unknown gateway "nope"')
