"""proxy.toml → one frozen, validated configuration (CONFIG.md).

``parse_config(text)`` and ``load_config(path)`` return a ``Config`` or raise
``ConfigError``, whose message lists every problem found, each as
``FILE:LINE: KEY: what is wrong`` (for example
``proxy.toml:14: number[0].forwarding[1].schedule[0]: "mon-fry 8-18" is not …``).
Keys are written as in the file, list positions counted from 0.

Decisions beyond CONFIG.md (documented for admins in examples/README.md):

- Optional keys and their defaults: ``[proxy]`` ``listen`` (udp and tcp on
  127.0.0.1:5060), ``data_dir`` ("var"), ``timezone`` (the machine's zone,
  "UTC" when it cannot be told), ``ring_time`` (30), ``digest_algorithms``
  (["SHA-256", "MD5"]), ``workers`` (1; "auto" = one per CPU). A forwarding's
  ``type`` defaults to "always", ``ringing`` to "parallel", ``duration`` to
  ``ring_time``, ``on`` to all three reasons; a number's ``otherwise`` to
  "unavailable". ``domain`` is required.
- User and group names start with a letter (so they never look like a number)
  and may hold letters, digits, ".", "_" and "-"; "anonymous" is reserved.
  Extensions are digits and must differ from every number and alias.
- Numbers may be written with spaces, "-", "/", "." or parentheses; they are
  kept in their plain form (``+`` and digits).
- A target written as digits that are a user's extension rings that user; a
  target naming one of our own numbers is an error (name its targets instead).
- ``delay`` is for parallel rules only and must be shorter than the rule's
  duration; a target's ``duration`` is 1–600 (``"unlimited"`` is set on the
  rule). In a sequential rule, targets after one that rings without limit
  would never ring: an error.
- ``otherwise`` may name any target; a user or group there rings as one more
  parallel step with ``ring_time`` (see routing.planner).
- Hosts (listen, gateway and ``sip:`` targets) are IP literals or
  "localhost" (taken as 127.0.0.1): the proxy does no DNS. Listen port 0
  asks the system for a free port (tests).
"""

from __future__ import annotations

import bisect
import datetime as dt
import difflib
import ipaddress
import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import field, frozen

from sipfork.routing.callers import CallerPattern, CallerPatternError, parse_caller_pattern
from sipfork.routing.numbers import plain_number
from sipfork.routing.plan import ALL_REASONS, Hop, Reason
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

__all__ = [
    "Config", "ConfigError", "Forwarding", "Gateway", "Group", "Listen", "Number",
    "Problem", "ProxySettings", "Target", "User", "load_config", "parse_config",
]

DIGEST_ALGORITHMS = ("SHA-256", "MD5")
MAX_DURATION = 600
STATUS_WORDS = {"unavailable": 480, "busy": 486, "decline": 603}
REASON_WORDS = {reason.value: reason for reason in Reason}

# ---------------------------------------------------------------- the model


@frozen(kw_only=True)
class Listen:
    transport: str  # "udp" | "tcp"
    host: str  # no brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


@frozen(kw_only=True)
class ProxySettings:
    domain: str
    listen: tuple[Listen, ...]
    data_dir: Path
    timezone: str = "UTC"
    ring_time: int = 30
    digest_algorithms: tuple[str, ...] = DIGEST_ALGORITHMS
    workers: int = 1


@frozen(kw_only=True)
class User:
    name: str
    password: str
    extension: str | None = None
    digest_algorithms: tuple[str, ...] | None = None


@frozen(kw_only=True)
class Group:
    name: str
    members: tuple[str, ...]


@frozen(kw_only=True)
class Gateway:
    name: str
    uri: str  # as written
    host: str  # an IP literal, no brackets
    port: int = 5060
    transport: str = "udp"
    username: str | None = None
    password: str | None = None
    inbound_from: tuple[str, ...] = ()


@frozen(kw_only=True)
class Target:
    """Something a rule rings (CONFIG.md, Targets)."""

    kind: str  # "user" | "group" | "external" | "uri"
    value: str  # user name, group name, plain number, or the URI as written
    text: str = ""  # as written in the file, for messages
    gateway: str | None = None  # external: the gateway (the first one when none was written)
    delay: int = 0  # parallel: seconds before it joins
    duration: int | None = None  # its own ring time; None: the rule's
    hop: Hop | None = None  # uri: where the request goes


@frozen(kw_only=True)
class Forwarding:
    index: int  # position in the number's list, from 0
    line: int | None
    type: str  # "always" | "schedule" | "date"
    schedule: tuple[Window, ...] = ()
    dates: tuple[DateRange, ...] = ()
    callers: tuple[CallerPattern, ...] = ()  # empty: every caller
    on: frozenset[Reason] = ALL_REASONS
    ringing: str = "parallel"  # "parallel" | "sequential"
    duration: int | None = 30  # None: "unlimited"
    targets: tuple[Target, ...] = ()

    name: str = field(init=False, eq=False, repr=False)  # "rule 2 (schedule mon-fri 08:00-18:00)"

    def __attrs_post_init__(self) -> None:
        callers = ""
        if self.callers:
            callers = ", callers " + " ".join(pattern.text for pattern in self.callers)
        object.__setattr__(self, "name", f"rule {self.index + 1} ({self.condition}{callers})")

    @property
    def condition(self) -> str:
        """``schedule mon-fri 08:00-18:00``, ``date 2026-12-24``, ``always``."""
        if self.type == "schedule":
            texts = dict.fromkeys(window.text for window in self.schedule)
            return "schedule " + ", ".join(texts)
        if self.type == "date":
            return "date " + ", ".join(r.text for r in self.dates)
        return "always"


@frozen(kw_only=True)
class Number:
    number: str  # plain form: "+" and digits
    aliases: tuple[str, ...] = ()
    otherwise: int | Target = 480  # 480 / 486 / 603, or a target
    forwardings: tuple[Forwarding, ...] = ()
    line: int | None = None


@frozen(kw_only=True)
class Config:
    proxy: ProxySettings
    users: tuple[User, ...] = ()
    groups: tuple[Group, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    numbers: tuple[Number, ...] = ()
    path: Path | None = None
    _users: dict[str, User] = field(init=False, repr=False, eq=False)
    _extensions: dict[str, User] = field(init=False, repr=False, eq=False)
    _groups: dict[str, Group] = field(init=False, repr=False, eq=False)
    _gateways: dict[str, Gateway] = field(init=False, repr=False, eq=False)
    _numbers: dict[str, Number] = field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        numbers: dict[str, Number] = {}
        for number in self.numbers:
            for text in (number.number, *number.aliases):
                numbers.setdefault(text, number)
        object.__setattr__(self, "_users", {u.name: u for u in self.users})
        object.__setattr__(
            self, "_extensions", {u.extension: u for u in self.users if u.extension}
        )
        object.__setattr__(self, "_groups", {g.name: g for g in self.groups})
        object.__setattr__(self, "_gateways", {g.name: g for g in self.gateways})
        object.__setattr__(self, "_numbers", numbers)

    def user(self, name: str) -> User | None:
        return self._users.get(name)

    def user_by_extension(self, extension: str) -> User | None:
        return self._extensions.get(extension)

    def group(self, name: str) -> Group | None:
        return self._groups.get(name)

    def gateway(self, name: str) -> Gateway | None:
        return self._gateways.get(name)

    def number(self, dialled: str) -> Number | None:
        """The number whose number or alias is exactly ``dialled`` (plain form)."""
        return self._numbers.get(dialled)


# ---------------------------------------------------------------- errors


@frozen(kw_only=True)
class Problem:
    key: str  # "number[0].forwarding[1].schedule[0]"
    line: int | None
    message: str


class ConfigError(Exception):
    """Everything wrong with a configuration, one ``FILE:LINE: KEY: problem`` a line."""

    def __init__(self, problems: list[Problem], source: str) -> None:
        self.problems = tuple(problems)
        self.source = source
        super().__init__("\n".join(self._format(p) for p in self.problems))

    def _format(self, problem: Problem) -> str:
        where = self.source if problem.line is None else f"{self.source}:{problem.line}"
        return f"{where}: {problem.key}: {problem.message}" if problem.key else f"{where}: {problem.message}"

    @property
    def line(self) -> int | None:
        return self.problems[0].line if self.problems else None

    @property
    def key(self) -> str:
        return self.problems[0].key if self.problems else ""


# ---------------------------------------------------------------- where keys are

Path_ = tuple[str | int, ...]
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"[^,\]}\n#]*")  # a number, boolean or date: up to the next separator


class _Lines:
    """Line numbers of tables, keys and array elements in TOML text.

    tomllib keeps no positions, so this walks the (already valid) text once:
    table headers, ``key = value`` lines, and the elements of arrays and
    inline tables, each recorded under its path such as
    ``("number", 0, "forwarding", 1, "targets", 2)``.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.where: dict[Path_, int] = {}
        self.pos = 0
        try:
            self._document()
        except (IndexError, ValueError):  # a construct this small walker does not know
            pass

    def line(self, path: Path_) -> int | None:
        for end in range(len(path), 0, -1):
            line = self.where.get(path[:end])
            if line is not None:
                return line
        return None

    def _line_at(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos)

    def _skip(self, newlines: bool) -> None:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t\r" or (newlines and char == "\n"):
                self.pos += 1
            elif char == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def _document(self) -> None:
        arrays: dict[Path_, int] = {}
        table: Path_ = ()
        text = self.text
        while True:
            self._skip(newlines=True)
            if self.pos >= len(text):
                return
            line = self._line_at(self.pos)
            if text[self.pos] == "[":
                double = text.startswith("[[", self.pos)
                self.pos += 2 if double else 1
                keys = self._key()
                self.pos = text.index("]", self.pos) + (2 if double else 1)
                resolved: Path_ = ()
                for key in keys[:-1]:
                    resolved += (key,)
                    if resolved in arrays:
                        resolved += (arrays[resolved],)
                resolved += (keys[-1],)
                if double:
                    self.where.setdefault(resolved, line)
                    arrays[resolved] = arrays.get(resolved, -1) + 1
                    resolved += (arrays[resolved],)
                table = resolved
                self.where.setdefault(table, line)
            else:
                self._key_value(table)

    def _key(self) -> list[str]:
        keys = []
        text = self.text
        while True:
            self._skip(newlines=False)
            char = text[self.pos]
            if char in "\"'":
                end = text.index(char, self.pos + 1)
                keys.append(text[self.pos + 1 : end])
                self.pos = end + 1
            else:
                match = _BARE_KEY.match(text, self.pos)
                if not match:
                    raise ValueError("not a key")
                keys.append(match[0])
                self.pos = match.end()
            self._skip(newlines=False)
            if text[self.pos] != ".":
                return keys
            self.pos += 1

    def _key_value(self, table: Path_) -> None:
        line = self._line_at(self.pos)
        path = table + tuple(self._key())
        self.where.setdefault(path, line)
        self.pos += 1  # "="
        self._value(path)

    def _value(self, path: Path_) -> None:
        self._skip(newlines=False)
        text = self.text
        char = text[self.pos]
        if text.startswith('"""', self.pos) or text.startswith("'''", self.pos):
            quote = text[self.pos : self.pos + 3]
            pos = self.pos + 3
            while True:
                end = text.index(quote, pos)
                if quote == "'''" or not _escaped(text, end):
                    break
                pos = end + 1
            self.pos = end + 3
            while text.startswith(quote[0], self.pos):  # up to two quotes may close the string
                self.pos += 1
        elif char == '"':
            pos = self.pos + 1
            while True:
                end = text.index('"', pos)
                if not _escaped(text, end):
                    break
                pos = end + 1
            self.pos = end + 1
        elif char == "'":
            self.pos = text.index("'", self.pos + 1) + 1
        elif char == "[":
            self.pos += 1
            index = 0
            while True:
                self._skip(newlines=True)
                if text[self.pos] == "]":
                    self.pos += 1
                    return
                self.where.setdefault(path + (index,), self._line_at(self.pos))
                self._value(path + (index,))
                index += 1
                self._skip(newlines=True)
                if text[self.pos] == ",":
                    self.pos += 1
        elif char == "{":
            self.pos += 1
            while True:
                self._skip(newlines=False)
                if text[self.pos] == "}":
                    self.pos += 1
                    return
                self._key_value(path)
                self._skip(newlines=False)
                if text[self.pos] == ",":
                    self.pos += 1
        else:
            match = _SCALAR.match(text, self.pos)
            self.pos = match.end() if match else self.pos + 1


def _escaped(text: str, pos: int) -> bool:
    backslashes = 0
    while pos > 0 and text[pos - 1] == "\\":
        backslashes += 1
        pos -= 1
    return backslashes % 2 == 1


# ---------------------------------------------------------------- reading values


class _Invalid(Exception):
    def __init__(self, path: Path_, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


_REQUIRED: Any = object()
_TYPE_NAMES = {
    str: "a string", int: "an integer", float: "a float", bool: "a boolean", list: "an array",
    dict: "a table", dt.datetime: "a date-time", dt.date: "a date", dt.time: "a time",
}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_LISTEN = re.compile(r"(udp|tcp):(\[[^\]]*\]|[^:\[\]]*):([0-9]{1,5})")
_SIP_URI = re.compile(r"(sips?):(?:([^@;]+)@)?(\[[^\]]*\]|[^:;\[\]@]+)(?::([0-9]{1,5}))?((?:;[^;]*)*)", re.I)


def _type_name(value: object) -> str:
    for kind, name in _TYPE_NAMES.items():
        if type(value) is kind:
            return name
    return type(value).__name__


def _show(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value) if type(value) is int else f"{_type_name(value)} {value!r}"


def _expect(value: object, kind: type, path: Path_, what: str | None = None) -> Any:
    if type(value) is not kind:
        raise _Invalid(path, f"expected {what or _TYPE_NAMES[kind]}, got {_type_name(value)} {value!r}")
    return value


def _keys(table: Mapping[str, object], path: Path_, allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else f" (known keys: {', '.join(allowed)})"
            raise _Invalid(path + (key,), f'unknown key "{key}"{hint}')


def _get(table: Mapping[str, object], path: Path_, key: str, kind: type, default: Any = _REQUIRED,
         what: str | None = None) -> Any:
    if key not in table:
        if default is _REQUIRED:
            raise _Invalid(path, f'missing key "{key}"')
        return default
    return _expect(table[key], kind, path + (key,), what)


def _strings(table: Mapping[str, object], path: Path_, key: str, default: Any = _REQUIRED,
             *, empty_ok: bool = False) -> Any:
    if key not in table:
        return _get(table, path, key, list, default)
    values = _expect(table[key], list, path + (key,), "an array of strings")
    for index, value in enumerate(values):
        _expect(value, str, path + (key, index))
    if not values and not empty_ok:
        raise _Invalid(path + (key,), "must not be empty (leave the key out instead)")
    for index, value in enumerate(values):
        if value in values[:index]:
            raise _Invalid(path + (key, index), f'"{value}" is listed twice')
    return tuple(values)


def _bounded(value: object, path: Path_, *, low: int = 1) -> int:
    """Whole seconds from ``low`` to MAX_DURATION."""
    if type(value) is not int or not low <= value <= MAX_DURATION:
        raise _Invalid(path, f"expected seconds from {low} to {MAX_DURATION}, got {_show(value)}")
    return value


def _seconds(value: object, path: Path_, *, unlimited: bool, low: int = 1) -> int | None:
    if unlimited and value == "unlimited":
        return None
    words = ' or "unlimited"' if unlimited else ""
    if type(value) is not int or not low <= value <= MAX_DURATION:
        raise _Invalid(path, f"expected seconds from {low} to {MAX_DURATION}{words}, got {_show(value)}")
    return value


def _ip_host(host: str, path: Path_, what: str) -> str:
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise _Invalid(path, f'{what} "{host}" is not an IP address or "localhost" (sipfork does no DNS)') from None


def _sip_uri(text: str, path: Path_) -> tuple[str, int, str]:
    """host, port, transport of a ``sip:`` URI whose host is an IP literal."""
    match = _SIP_URI.fullmatch(text)
    if not match:
        raise _Invalid(path, f'"{text}" is not a SIP URI like "sip:127.0.0.1:5080"')
    if match[1].lower() == "sips":
        raise _Invalid(path, f'"{text}": sips (TLS) is not supported; use sip: with transport udp or tcp')
    host = match[3]
    if host.startswith("["):
        host = host[1:-1]
    elif ":" in host:
        raise _Invalid(path, f'"{text}": write an IPv6 address in brackets')
    host = _ip_host(host, path, "host")
    port = int(match[4]) if match[4] else 5060
    if not 1 <= port <= 65535:
        raise _Invalid(path, f'"{text}": port {port} is out of range')
    transport = "udp"
    for param in (match[5] or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.lower() == "transport":
            transport = value.lower()
            if transport not in ("udp", "tcp"):
                raise _Invalid(path, f'"{text}": transport "{value}" is not udp or tcp')
    return host, port, transport


def _machine_timezone() -> str:
    candidates = []
    if os.environ.get("TZ"):
        candidates.append(os.environ["TZ"].lstrip(":"))
    try:
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    except OSError:
        pass
    try:
        link = os.readlink("/etc/localtime")
        if "zoneinfo/" in link:
            candidates.append(link.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        if _valid_timezone(name):
            return name
    return "UTC"


def _valid_timezone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


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


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _algorithms(table: Mapping[str, object], path: Path_, default: Any) -> Any:
    values = _strings(table, path, "digest_algorithms", default)
    if values is None or values is default:
        return values
    canonical = []
    for index, value in enumerate(values):
        upper = value.upper()
        if upper not in DIGEST_ALGORITHMS:
            raise _Invalid(path + ("digest_algorithms", index),
                           f'"{value}" is not supported (choose from "SHA-256", "MD5")')
        if upper in canonical:
            raise _Invalid(path + ("digest_algorithms", index), f'"{value}" is listed twice')
        canonical.append(upper)
    return tuple(canonical)


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
    return User(name=name, password=password, extension=extension,
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
