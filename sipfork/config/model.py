"""The configuration model: frozen, slotted attrs classes (DESIGN.md rule 5)."""

from __future__ import annotations

from pathlib import Path

from attrs import field, frozen

from sipfork.routing.callers import CallerPattern
from sipfork.routing.plan import ALL_REASONS, Hop, Reason
from sipfork.routing.schedule import DateRange, Window

DIGEST_ALGORITHMS = ("SHA-256", "MD5")


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


@frozen(kw_only=True, weakref_slot=False)  # one per [[user]]: 64 bytes, not 80
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
