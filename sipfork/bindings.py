"""A registered contact (RFC 3261 §10): the value shared by the registrar,
the routing planner and the store."""

from __future__ import annotations

import sys

from attrs import field, frozen

from sipfork.routing.plan import Hop
from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.uri import SipUri, parse_uri

_intern = sys.intern


@frozen(kw_only=True, weakref_slot=False)  # no __weakref__ slot: 128 bytes, not 144, per binding
class Binding:
    """One contact of one user, with where its REGISTER came from.

    ``source`` and ``transport`` are the address and transport the REGISTER
    arrived from (RFC 3581 rport); requests to the contact go there, so a
    phone behind NAT or on a TCP connection stays reachable.

    A registrar holds one of these per registered phone, so it is kept
    small: the strings many bindings share (source host, transport,
    User-Agent) are interned, and the ``hop`` is worked out on first use
    (the planner asks for it on every call to the contact; most contacts
    are never called between two registrations).
    """

    user: str  # the registrar passes the configuration's own string; the store interns what it loads
    contact: str  # the Contact URI as the phone wrote it, without < >
    source_host: str = field(converter=_intern)
    source_port: int
    transport: str = field(converter=_intern)  # "udp" | "tcp"
    expires_at: float  # wall-clock seconds since the epoch
    q: float = 1.0
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
