"""proxy.toml text → a validated ``Config``: each section read and checked,
then the whole file (``parse_config``, ``load_config``). Every problem found
is collected into one ``ConfigError``."""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sipfork.config.errors import ConfigError, Problem
from sipfork.config.lines import Path_, _Lines
from sipfork.config.model import (
    DIGEST_ALGORITHMS,
    Config,
    Forwarding,
    Gateway,
    Group,
    Listen,
    Number,
    ProxySettings,
    Target,
    User,
)
from sipfork.config.values import (
    _bounded,
    _expect,
    _get,
    _Invalid,
    _ip_host,
    _is_ip,
    _keys,
    _machine_timezone,
    _seconds,
    _show,
    _sip_uri,
    _strings,
    _type_name,
    _valid_timezone,
)
from sipfork.routing.callers import CallerPatternError, parse_caller_pattern
from sipfork.routing.numbers import plain_number
from sipfork.routing.plan import Hop, Reason
from sipfork.routing.schedule import (
    DATES_HINT,
    SCHEDULE_HINT,
    DateRange,
    ScheduleError,
    Window,
    overlap,
    parse_date_entry,
    parse_schedule_entry,
)

STATUS_WORDS = {"unavailable": 480, "busy": 486, "decline": 603}
REASON_WORDS = {reason.value: reason for reason in Reason}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_LISTEN = re.compile(r"(udp|tcp):(\[[^\]]*\]|[^:\[\]]*):([0-9]{1,5})")


# ---------------------------------------------------------------- sections


def _proxy(raw: object, base: Path) -> ProxySettings:
    path: Path_ = ("proxy",)
    table: dict[str, Any] = _expect(raw, dict, path, "a table [proxy]")
    _keys(table, path, ("domain", "listen", "data_dir", "timezone", "ring_time", "digest_algorithms", "workers"))
    domain = _get(table, path, "domain", str)
    if not (_HOSTNAME.fullmatch(domain) or _is_ip(domain)):
        raise _Invalid(path + ("domain",), f'"{domain}" is not a domain name like "pbx.local"')
    listen = []
    for index, text in enumerate(_strings(table, path, "listen", ("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"))):
        key = path + ("listen", index)
        match = _LISTEN.fullmatch(text)
        if not match:
            raise _Invalid(key, f'"{text}" is not transport:host:port like "udp:127.0.0.1:5060" (transport udp or tcp, IPv6 in brackets)')
        host = match[2][1:-1] if match[2].startswith("[") else match[2]
        if ":" in host and not match[2].startswith("["):
            raise _Invalid(key, f'"{text}": write an IPv6 address in brackets, like "udp:[::1]:5060"')
        port = int(match[3])
        if port > 65535:
            raise _Invalid(key, f'"{text}": port {port} is out of range')
        entry = Listen(transport=match[1], host=_ip_host(host, key, "host"), port=port)
        if entry in listen:
            raise _Invalid(key, f'"{text}" is listed twice')
        listen.append(entry)
    data_dir = Path(_get(table, path, "data_dir", str, "var")).expanduser()
    if not data_dir.is_absolute():
        data_dir = base / data_dir
    data_dir = Path(os.path.normpath(data_dir))
    timezone = _get(table, path, "timezone", str, None)
    if timezone is None:
        timezone = _machine_timezone()
    elif not _valid_timezone(timezone):
        raise _Invalid(path + ("timezone",), f'"{timezone}" is not a time zone name like "Europe/Berlin"')
    ring_time = _bounded(table.get("ring_time", 30), path + ("ring_time",))
    algorithms = _algorithms(table, path, DIGEST_ALGORITHMS)
    workers = table.get("workers", 1)
    if workers == "auto":
        workers = os.cpu_count() or 1
    elif type(workers) is not int or not 1 <= workers <= 256:
        raise _Invalid(path + ("workers",), f'expected a number of processes from 1 to 256 or "auto", got {_show(workers)}')
    return ProxySettings(domain=domain, listen=tuple(listen), data_dir=data_dir, timezone=timezone,
                         ring_time=ring_time, digest_algorithms=algorithms, workers=workers)


# One tuple object per list of algorithms, shared by every user that has it
# (a file may have thousands of [[user]] tables with the same list).
_ALGORITHM_NAMES = {name: name for name in DIGEST_ALGORITHMS}
_ALGORITHM_LISTS: dict[tuple[str, ...], tuple[str, ...]] = {}


def _algorithms(table: Mapping[str, object], path: Path_, default: Any) -> Any:
    values = _strings(table, path, "digest_algorithms", default)
    if values is None or values is default:
        return values
    canonical: list[str] = []
    for index, value in enumerate(values):
        upper = _ALGORITHM_NAMES.get(value.upper())
        if upper is None:
            raise _Invalid(path + ("digest_algorithms", index),
                           f'"{value}" is not supported (choose from "SHA-256", "MD5")')
        if upper in canonical:
            raise _Invalid(path + ("digest_algorithms", index), f'"{value}" is listed twice')
        canonical.append(upper)
    result = tuple(canonical)
    return _ALGORITHM_LISTS.setdefault(result, result)


def _name(table: Mapping[str, object], path: Path_, what: str) -> str:
    name: str = _get(table, path, "name", str)
    if not _NAME.fullmatch(name) or name.lower() == "anonymous":
        raise _Invalid(path + ("name",), f'"{name}" is not a {what} name: start with a letter, then letters, '
                       'digits, ".", "_" or "-" ("anonymous" is reserved)')
    return name


def _user(table: Mapping[str, object], path: Path_) -> User:
    _keys(table, path, ("name", "password", "extension", "digest_algorithms"))
    name = _name(table, path, "user")
    password = _get(table, path, "password", str)
    if not password:
        raise _Invalid(path + ("password",), "must not be empty")
    extension = _get(table, path, "extension", str, None, 'a string of digits like "11"')
    if extension is not None and not (extension.isascii() and extension.isdigit()):
        raise _Invalid(path + ("extension",), f'"{extension}" is not an extension: digits only, like "11"')
    # Interned: many users may share a password text (generated files, tests);
    # one string object serves them all.
    return User(name=name, password=sys.intern(password), extension=extension,
                digest_algorithms=_algorithms(table, path, None))


def _group(table: Mapping[str, object], path: Path_, users: frozenset[str]) -> Group:
    _keys(table, path, ("name", "members"))
    name = _name(table, path, "group")
    members = _strings(table, path, "members")
    for index, member in enumerate(members):
        if member not in users:
            raise _Invalid(path + ("members", index), f'unknown user "{member}"')
    return Group(name=name, members=members)


def _gateway(table: Mapping[str, object], path: Path_) -> Gateway:
    _keys(table, path, ("name", "uri", "username", "password", "inbound_from"))
    name = _name(table, path, "gateway")
    uri = _get(table, path, "uri", str)
    host, port, transport = _sip_uri(uri, path + ("uri",))
    username = _get(table, path, "username", str, None)
    password = _get(table, path, "password", str, None)
    if (username is None) != (password is None):
        missing = "password" if password is None else "username"
        raise _Invalid(path, f'"username" and "password" go together: "{missing}" is missing')
    inbound = []
    for index, address in enumerate(_strings(table, path, "inbound_from", (), empty_ok=True)):
        inbound.append(_ip_host(address, path + ("inbound_from", index), "address"))
    return Gateway(name=name, uri=uri, host=host, port=port, transport=transport,
                   username=username, password=password, inbound_from=tuple(inbound))


class _Names:
    """What targets may refer to, collected before the numbers are read."""

    def __init__(self, users: list[User], raw_users: set[str], groups: set[str],
                 gateways: list[str], numbers: set[str]) -> None:
        self.users = frozenset(raw_users)
        self.extensions = {u.extension: u.name for u in users if u.extension}
        self.groups = frozenset(groups)
        self.gateways = gateways
        self.numbers = numbers


def _target(value: object, path: Path_, names: _Names, *, options: tuple[str, ...]) -> Target:
    settings: Mapping[str, object] = {}
    if isinstance(value, dict):
        _keys(value, path, ("target", *options))
        settings = value
        text = _get(value, path, "target", str)
        text_path = path + ("target",)
    else:
        text = _expect(value, str, path, 'a target: a string like "alice", "group:office", '
                       '"+491701234567", "sip:mailbox@127.0.0.1:5090", or an inline table')
        text_path = path
    gateway = _get(settings, path, "gateway", str, None)
    delay = _bounded(settings.get("delay", 0), path + ("delay",), low=0)
    duration = None
    if "duration" in settings:
        duration = _bounded(settings["duration"], path + ("duration",))
    kind, _, rest = text.partition(":")
    number = plain_number(text)
    hop = None
    if kind == "group" and rest:
        if rest not in names.groups:
            raise _Invalid(text_path, f'unknown group "{rest}"')
        found, value_ = "group", rest
    elif (kind == "user" and rest) or _NAME.fullmatch(text):
        found, value_ = "user", rest if kind == "user" else text
        if value_ not in names.users:
            hint = f' (for the group write "group:{value_}")' if value_ in names.groups else ""
            raise _Invalid(text_path, f'unknown user "{value_}"{hint}')
    elif kind.lower() in ("sip", "sips"):
        host, port, transport = _sip_uri(text, text_path)
        hop = Hop(host=host, port=port, transport=transport)
        found, value_ = "uri", text
    elif number is not None and number in names.extensions and not text.lower().startswith("tel:"):
        found, value_ = "user", names.extensions[number]
    elif number is not None:
        if number in names.numbers:
            raise _Invalid(text_path, f'"{text}" is one of our own numbers: name its targets instead')
        if gateway is None:
            if not names.gateways:
                raise _Invalid(text_path, f'"{text}" is an external number, but no [[gateway]] is configured')
            gateway = names.gateways[0]
        elif gateway not in names.gateways:
            raise _Invalid(path + ("gateway",), f'unknown gateway "{gateway}"')
        return Target(kind="external", value=number, text=text, gateway=gateway, delay=delay, duration=duration)
    else:
        raise _Invalid(text_path, f'"{text}" is not a target: a user ("alice", "user:alice"), a group '
                       '("group:office"), a number ("+491701234567", "tel:+49…") or a URI ("sip:…")')
    if gateway is not None:
        raise _Invalid(path + ("gateway",), "a gateway applies to external numbers only")
    return Target(kind=found, value=value_, text=text, delay=delay, duration=duration, hop=hop)


def _forwarding(table: Mapping[str, object], path: Path_, index: int, line: int | None,
                names: _Names, ring_time: int) -> Forwarding:
    _keys(table, path, ("type", "schedule", "dates", "callers", "on", "ringing", "duration", "targets"))
    kind = _get(table, path, "type", str, "always")
    if kind not in ("always", "schedule", "date"):
        raise _Invalid(path + ("type",), f'"{kind}" is not "always", "schedule" or "date"')
    for key, owner in (("schedule", "schedule"), ("dates", "date")):
        if key in table and kind != owner:
            raise _Invalid(path + (key,), f'"{key}" belongs to type = "{owner}", but this rule is type = "{kind}"')
    for key, owner in (("schedule", "schedule"), ("dates", "date")):
        if key not in table and kind == owner:
            raise _Invalid(path, f'type = "{owner}" needs "{key}"')
    windows: list[Window] = []
    for i, text in enumerate(_strings(table, path, "schedule", ())):
        try:
            windows.extend(parse_schedule_entry(text))
        except ScheduleError as error:
            raise _Invalid(path + ("schedule", i), f'"{text}" {SCHEDULE_HINT} ({error})') from None
    dates: list[DateRange] = []
    for i, text in enumerate(_strings(table, path, "dates", ())):
        try:
            dates.append(parse_date_entry(text))
        except ScheduleError as error:
            raise _Invalid(path + ("dates", i), f'"{text}" {DATES_HINT} ({error})') from None
    both = overlap(tuple(dates))
    if both:
        i = next(i for i, r in enumerate(dates) if r is both[1])
        raise _Invalid(path + ("dates", i), f'"{both[1].text}" overlaps "{both[0].text}"')
    callers = []
    for i, text in enumerate(_strings(table, path, "callers", ())):
        try:
            callers.append(parse_caller_pattern(text, names.users))
        except CallerPatternError as error:
            raise _Invalid(path + ("callers", i), str(error)) from None
    on = set()
    for i, text in enumerate(_strings(table, path, "on", ("no-answer", "busy", "unreachable"))):
        if text not in REASON_WORDS:
            raise _Invalid(path + ("on", i), f'"{text}" is not "no-answer", "busy" or "unreachable"')
        on.add(REASON_WORDS[text])
    ringing = _get(table, path, "ringing", str, "parallel")
    if ringing not in ("parallel", "sequential"):
        raise _Invalid(path + ("ringing",), f'"{ringing}" is not "parallel" or "sequential"')
    duration = _seconds(table.get("duration", ring_time), path + ("duration",), unlimited=True)
    raw_targets = _get(table, path, "targets", list, what="an array of targets")
    if not raw_targets:
        raise _Invalid(path + ("targets",), "must name at least one target")
    targets: list[Target] = []
    for i, raw in enumerate(raw_targets):
        target_path = path + ("targets", i)
        target = _target(raw, target_path, names, options=("gateway", "delay", "duration"))
        same = (target.kind, target.value, target.gateway)
        if any((t.kind, t.value, t.gateway) == same for t in targets):
            raise _Invalid(target_path, f'"{target.text}" is listed twice')
        if ringing == "sequential" and target.delay:
            raise _Invalid(target_path + ("delay",), "delay applies to parallel ringing; in a sequential rule "
                           "each target starts when the one before it stops")
        if ringing == "parallel" and duration is not None and target.delay >= duration:
            raise _Invalid(target_path + ("delay",), f"a delay of {target.delay}s never rings: "
                           f"the rule rings for {duration}s")
        if ringing == "sequential" and targets and targets[-1].duration is None and duration is None:
            raise _Invalid(target_path, f'"{target.text}" never rings: the target before it rings without '
                           'limit (duration = "unlimited"); give that one its own duration')
        targets.append(target)
    return Forwarding(index=index, line=line, type=kind, schedule=tuple(windows), dates=tuple(dates),
                      callers=tuple(callers), on=frozenset(on), ringing=ringing, duration=duration,
                      targets=tuple(targets))


def _number_text(value: object, path: Path_) -> str:
    text = _expect(value, str, path, 'a number written as a string, like "+4922166966966"')
    number = plain_number(text)
    if number is None or text.lower().startswith("tel:"):
        raise _Invalid(path, f'"{text}" is not a phone number: digits with an optional leading "+"')
    return number


# ---------------------------------------------------------------- the whole file


def parse_config(text: str, source: str | Path | None = None, *, path: Path | None = None) -> Config:
    """Read and validate proxy.toml text. ``path`` (or ``source``) names the file
    in messages; relative ``data_dir`` is taken from its folder (else the
    current folder)."""
    if path is None and source is not None:
        path = Path(source)
    elif path is not None:
        path = Path(path)
    label = str(path) if path is not None else "<config>"
    problems: list[Problem] = []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        match = re.search(r"\(at line (\d+), column (\d+)\)$", message)
        line = int(match[1]) if match else None
        if match:
            message = f"{message[: match.start()].strip()} (column {match[2]})"
        raise ConfigError([Problem(key="", line=line, message=f"not valid TOML: {message}")], label) from None
    lines = _Lines(text)

    def problem(error: _Invalid) -> None:
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path).lstrip(".")
        problems.append(Problem(key=key, line=lines.line(error.path), message=error.message))

    def tables(key: str) -> list[tuple[Path_, dict[str, Any]]]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            problem(_Invalid((key,), f"expected [[{key}]] tables (an array of tables), got {_type_name(value)}"))
            return []
        return [((key, i), v) for i, v in enumerate(value)]

    try:
        _keys(data, (), ("proxy", "user", "group", "gateway", "number"))
    except _Invalid as error:
        problem(error)
    base = path.parent if path is not None else Path.cwd()
    proxy = None
    try:
        proxy = _proxy(data.get("proxy", {}) if "proxy" in data else _missing_proxy(), base.absolute())
    except _Invalid as error:
        problem(error)
    ring_time = proxy.ring_time if proxy else 30

    users: list[User] = []
    user_tables = tables("user")
    for where, table in user_tables:
        try:
            user = _user(table, where)
        except _Invalid as error:
            problem(error)
            continue
        users.append(user)
    _duplicates(problem, user_tables, "name", "user name")
    _duplicates(problem, user_tables, "extension", "extension")
    raw_users = {t["name"] for _, t in user_tables if isinstance(t.get("name"), str)}

    groups: list[Group] = []
    group_tables = tables("group")
    for where, table in group_tables:
        try:
            groups.append(_group(table, where, frozenset(raw_users)))
        except _Invalid as error:
            problem(error)
    _duplicates(problem, group_tables, "name", "group name")

    gateways: list[Gateway] = []
    gateway_tables = tables("gateway")
    for where, table in gateway_tables:
        try:
            gateways.append(_gateway(table, where))
        except _Invalid as error:
            problem(error)
    _duplicates(problem, gateway_tables, "name", "gateway name")

    number_tables = tables("number")
    own: dict[str, Path_] = {}
    for where, table in number_tables:
        entries = [(where + ("number",), table.get("number"))]
        if isinstance(table.get("aliases"), list):
            entries += [(where + ("aliases", i), v) for i, v in enumerate(table["aliases"])]
        for key, value in entries:
            number = plain_number(value) if isinstance(value, str) else None
            if number is None:
                continue
            if number in own:
                first = own[number]
                problem(_Invalid(key, f'"{value}" is already {_describe(first)} (line {lines.line(first)})'))
            else:
                own[number] = key
    extensions = {u.extension: u for u in users if u.extension}
    for number, key in own.items():
        if number in extensions:
            problem(_Invalid(key, f'"{number}" is also the extension of user "{extensions[number].name}"'))
    names = _Names(users, raw_users, {t["name"] for _, t in group_tables if isinstance(t.get("name"), str)},
                   [t["name"] for _, t in gateway_tables if isinstance(t.get("name"), str)], set(own))
    numbers: list[Number] = []
    for where, table in number_tables:
        try:
            numbers.append(_number(table, where, names, ring_time, lines, problem))
        except _Invalid as error:
            problem(error)

    if problems or proxy is None:
        raise ConfigError(problems, label)
    return Config(proxy=proxy, users=tuple(users), groups=tuple(groups), gateways=tuple(gateways),
                  numbers=tuple(numbers), path=path)


def _missing_proxy() -> dict[str, Any]:
    raise _Invalid(("proxy",), 'missing table [proxy] (at least: domain = "pbx.local")')


def _describe(path: Path_) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _duplicates(problem: Any, tables: list[tuple[Path_, dict[str, Any]]], key: str, what: str) -> None:
    seen: dict[str, Path_] = {}
    for where, table in tables:
        value = table.get(key)
        if not isinstance(value, str):
            continue
        if value in seen:
            problem(_Invalid(where + (key,), f'duplicate {what} "{value}" (also {_describe(seen[value])})'))
        else:
            seen[value] = where


def _number(table: Mapping[str, Any], path: Path_, names: _Names, ring_time: int,
            lines: _Lines, problem: Any) -> Number:
    _keys(table, path, ("number", "aliases", "otherwise", "forwarding"))
    number = _number_text(_get(table, path, "number", str, what='a number written as a string, like "+4922166966966"'),
                          path + ("number",))
    aliases = tuple(_number_text(v, path + ("aliases", i)) for i, v in enumerate(_strings(table, path, "aliases", ())))
    raw = table.get("otherwise", "unavailable")
    otherwise: int | Target
    if isinstance(raw, str) and raw in STATUS_WORDS:
        otherwise = STATUS_WORDS[raw]
    else:
        try:
            otherwise = _target(raw, path + ("otherwise",), names, options=("gateway",))
        except _Invalid as error:
            if isinstance(raw, dict):
                raise
            raise _Invalid(error.path, f'{error.message}; or one of "unavailable", "busy", "decline"') from None
    rules = table.get("forwarding", [])
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise _Invalid(path + ("forwarding",), "expected [[number.forwarding]] tables")
    forwardings = []
    for index, rule in enumerate(rules):
        where = path + ("forwarding", index)
        try:
            forwardings.append(_forwarding(rule, where, index, lines.line(where), names, ring_time))
        except _Invalid as error:
            problem(error)
    return Number(number=number, aliases=aliases, otherwise=otherwise, forwardings=tuple(forwardings),
                  line=lines.line(path))


def load_config(path: str | Path) -> Config:
    """Read and validate a proxy.toml file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([Problem(key="", line=None, message=f"cannot read the file: {error}")], str(path)) from None
    return parse_config(text, path=path)
