"""A registered contact (RFC 3261 §10): the value shared by the registrar,
the routing planner and the store."""

from __future__ import annotations

import sys

from attrs import field, frozen

from sipfork.routing.plan import Hop
from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.uri import SipUri, parse_uri

_intern = sys.intern

# One int object per source port and one float per q value, shared by every
# binding that has it: the shell hands over a new int with each datagram's
# address (only -5..256 are shared by Python), and a phone's port is often
# the same as many others' (5060). Bounded: at most 65536 ports; q values
# (RFC 3261 qvalue: 0 to 1, three decimals) up to _SHARED_Q_LIMIT.
_PORTS: dict[int, int] = {}
_QS: dict[float, float] = {1.0: 1.0}
_SHARED_Q_LIMIT = 1024


def _shared_port(port: int) -> int:
    if type(port) is not int or not 0 <= port <= 65535:
        return port
    return _PORTS.setdefault(port, port)


def _shared_q(q: float) -> float:
    if type(q) is not float:
        return q
    shared = _QS.get(q)
    if shared is None:
        if len(_QS) >= _SHARED_Q_LIMIT:
            return q
        _QS[q] = shared = q
    return shared


@frozen(kw_only=True, weakref_slot=False)  # no __weakref__ slot: 128 bytes, not 144, per binding
class Binding:
    """One contact of one user, with where its REGISTER came from.

    ``source`` and ``transport`` are the address and transport the REGISTER
    arrived from (RFC 3581 rport); requests to the contact go there, so a
    phone behind NAT or on a TCP connection stays reachable.

    A registrar holds one of these per registered phone, so it is kept
    small: the strings many bindings share (source host, transport,
    User-Agent) are interned, source ports and q values shared (see
    ``_shared_port``), and the ``hop`` is worked out on first use
    (the planner asks for it on every call to the contact; most contacts
    are never called between two registrations).
    """

    user: str  # the registrar passes the configuration's own string; the store interns what it loads
    contact: str  # the Contact URI as the phone wrote it, without < >
    source_host: str = field(converter=_intern)
    source_port: int = field(converter=_shared_port)
    transport: str = field(converter=_intern)  # "udp" | "tcp"
    expires_at: float  # wall-clock seconds since the epoch
    q: float = field(default=1.0, converter=_shared_q)
    call_id: str = ""
    cseq: int = 0
    user_agent: str = field(default="", converter=_intern)
    registered_at: float = 0.0
    _hop: Hop | None = field(init=False, default=None, eq=False, repr=False)

    @property
    def hop(self) -> Hop:
        """Where requests to this contact go: where it registered from; over
        TCP also the Contact's own address, for when that connection is
        gone. Worked out once."""
        hop = self._hop
        if hop is None:
            alternate = None
            if self.transport == "tcp":
                try:
                    uri = parse_uri(self.contact)
                except RemoteProtocolError:
                    uri = None
                if isinstance(uri, SipUri) and (uri.host, uri.port) != (self.source_host, self.source_port):
                    alternate = (uri.host, uri.port or 5060)
            hop = Hop(host=self.source_host, port=self.source_port, transport=self.transport, alternate=alternate)
            object.__setattr__(self, "_hop", hop)
        return hop

    def __lt__(self, other: Binding) -> bool:
        """Expiry order, for the location table's heap of bindings (a heap
        entry is then one pointer, not a tuple per binding)."""
        return self.expires_at < other.expires_at
