"""Reading single values: type checks, known keys, seconds, IP hosts, SIP
URIs and time zones. Each check raises ``_Invalid`` naming the key's path."""

from __future__ import annotations

import datetime as dt
import difflib
import ipaddress
import os
import re
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sipfork.config.lines import Path_

MAX_DURATION = 600


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


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


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
