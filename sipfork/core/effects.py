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


def trying_after_requests(effects: list[Effect], start: int) -> None:
    """Send an INVITE's 100 Trying (``effects[start]``) after the requests
    forked for it, just before the first response that follows, if any.

    The 100 only stops the caller's retransmissions (RFC 3261 §16.2,
    §17.1.1.2: the first one 500 ms later); the phones that are to ring
    get their INVITE a send earlier. The transaction sent it first, so
    nothing else changes."""
    if len(effects) <= start:
        return
    trying = effects[start]
    if not (isinstance(trying, Send) and trying.data.startswith(b"SIP/2.0 100 ")):
        return
    for index in range(start + 1, len(effects)):
        effect = effects[index]
        if isinstance(effect, Send) and effect.data.startswith(b"SIP/"):
            if index > start + 1:
                del effects[start]
                effects.insert(index - 1, trying)
            return
    if len(effects) > start + 1:
        del effects[start]
        effects.append(trying)
