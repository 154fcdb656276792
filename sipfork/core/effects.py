"""What the core asks the shell to do, in order (DESIGN.md: events in, values out)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from attrs import evolve, field, frozen

from sipfork.bindings import Binding

if TYPE_CHECKING:
    from sipfork.sip.message import Request


@frozen(kw_only=True)
class Send:
    """Send ``data`` to ``host:port`` over ``transport`` ("udp" | "tcp")."""

    data: bytes
    host: str
    port: int
    transport: str
    alternate: tuple[str, int] | None = None  # see Hop.alternate


@frozen(kw_only=True, eq=False)
class RegisterAnswer:
    """The REGISTER a store change came from and the 200 OK that says it is
    done. The shell holds the 200 back until the change is written; if the
    write fails, it hands the effects back to the core
    (:meth:`sipfork.core.proxy.Core.store_failed`), which answers the
    REGISTER 500 in its place."""

    request: Request
    source: tuple[str, int]
    response: Send  # the 200 OK as it stands among the effects
    key: str  # the request's transaction key: a retransmission is answered by it


# The fields after the first ones are not part of a change's value (eq,
# repr): they are what the core needs to take the change back when the
# store did not take it (Core.store_failed), and only it reads them.


@frozen(kw_only=True)
class SaveBinding:
    """Write a binding to the store before anything after it is sent."""

    binding: Binding
    previous: Binding | None = field(default=None, eq=False, repr=False)  # what it replaced
    answer: RegisterAnswer | None = field(default=None, eq=False, repr=False)


@frozen(kw_only=True)
class DropBinding:
    user: str
    contact: str
    dropped: Binding | None = field(default=None, eq=False, repr=False)
    answer: RegisterAnswer | None = field(default=None, eq=False, repr=False)  # None: it expired


@frozen(kw_only=True)
class Log:
    """A log record; ``level`` is a :mod:`logging` level number."""

    level: int
    message: str


Effect = Send | SaveBinding | DropBinding | Log


def answered_by(effects: Iterable[Effect], answer: RegisterAnswer) -> list[Effect]:
    """``effects`` with each store change marked as acknowledged by ``answer``."""
    return [evolve(effect, answer=answer) if isinstance(effect, (SaveBinding, DropBinding)) else effect
            for effect in effects]
