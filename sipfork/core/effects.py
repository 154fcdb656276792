"""What the core asks the shell to do, in order (DESIGN.md: events in, values out)."""

from __future__ import annotations

from attrs import frozen

from sipfork.bindings import Binding


@frozen(kw_only=True)
class Send:
    """Send ``data`` to ``host:port`` over ``transport`` ("udp" | "tcp")."""

    data: bytes
    host: str
    port: int
    transport: str
    alternate: tuple[str, int] | None = None  # see Hop.alternate


@frozen(kw_only=True)
class SaveBinding:
    """Write a binding to the store before anything after it is sent."""

    binding: Binding


@frozen(kw_only=True)
class DropBinding:
    user: str
    contact: str


@frozen(kw_only=True)
class Log:
    """A log record; ``level`` is a :mod:`logging` level number."""

    level: int
    message: str


Effect = Send | SaveBinding | DropBinding | Log
