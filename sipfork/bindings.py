"""A registered contact (RFC 3261 §10): the value shared by the registrar,
the routing planner and the store."""

from __future__ import annotations

from attrs import field, frozen

from sipfork.routing.plan import Hop
from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.uri import SipUri, parse_uri


@frozen(kw_only=True)
class Binding:
    """One contact of one user, with where its REGISTER came from.

    ``source`` and ``transport`` are the address and transport the REGISTER
    arrived from (RFC 3581 rport); requests to the contact go there, so a
    phone behind NAT or on a TCP connection stays reachable.
    """

    user: str
    contact: str  # the Contact URI as the phone wrote it, without < >
    source_host: str
    source_port: int
    transport: str  # "udp" | "tcp"
    expires_at: float  # wall-clock seconds since the epoch
    q: float = 1.0
    call_id: str = ""
    cseq: int = 0
    user_agent: str = ""
    registered_at: float = 0.0
    # Where requests to this contact go, worked out once: the planner asks
    # for it on every call.
    hop: Hop = field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        """Where it registered from; over TCP also the Contact's own address,
        for when that connection is gone."""
        alternate = None
        if self.transport == "tcp":
            try:
                uri = parse_uri(self.contact)
            except RemoteProtocolError:
                uri = None
            if isinstance(uri, SipUri) and (uri.host, uri.port) != (self.source_host, self.source_port):
                alternate = (uri.host, uri.port or 5060)
        object.__setattr__(self, "hop", Hop(host=self.source_host, port=self.source_port, transport=self.transport,
                                            alternate=alternate))
