"""The proxy's own addresses: which listener a message uses, the Via and
Record-Route values we write, and whether a URI names us.

RFC 3261 §16.4 (loose routing: recognising our own Route values), §16.6
steps 4 and 8 (Record-Route, Via), RFC 5658 (double Record-Route when a
request changes transport or address family on its way through).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from attrs import field, frozen

from sipfork.config import Config, Listen
from sipfork.routing.plan import Hop
from sipfork.sip.uri import SipUri, TelUri

DEFAULT_PORT = 5060


def is_ipv6(host: str) -> bool:
    return ":" in host


def host_port_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if is_ipv6(host) else f"{host}:{port}"


@lru_cache(maxsize=1024)
def literal_host(host: str) -> str | None:
    """``host`` as an IP literal we can send to, or None (the core does no DNS)."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host


@frozen(kw_only=True)
class Interfaces:
    domain: str
    listens: tuple[Listen, ...]
    # (host, port) pairs that are ours, for Route and Request-URI checks.
    addresses: frozenset[tuple[str, int]]
    hosts: frozenset[str]
    # A worker's own port per (transport, host) listener, written in the Via
    # of what it sends so that responses come back to it, not to whichever
    # worker the shared port would pick (DESIGN.md, performance plan).
    via_ports: tuple[tuple[tuple[str, str], int], ...] = ()
    # What via() and record_routes() worked out, by transport and address
    # family (all they depend on): they run for every branch.
    _via_prefixes: dict[tuple[str, bool], str] = field(init=False, factory=dict, eq=False, repr=False)
    _record_routes: dict[tuple[str, bool, str, bool], tuple[str, ...]] = field(
        init=False, factory=dict, eq=False, repr=False
    )

    @classmethod
    def from_config(cls, config: Config, via_ports: tuple[tuple[tuple[str, str], int], ...] = ()) -> Interfaces:
        listens = config.proxy.listen
        addresses = {(listen.host, listen.port) for listen in listens}
        hosts = {config.proxy.domain, *(listen.host for listen in listens)}
        addresses.update((host, port) for (_, host), port in via_ports)
        for listen in listens:
            if listen.host in ("0.0.0.0", "::"):
                addresses.add(("127.0.0.1" if listen.host == "0.0.0.0" else "::1", listen.port))
        return cls(
            domain=config.proxy.domain,
            listens=listens,
            addresses=frozenset(addresses),
            hosts=frozenset(hosts),
            via_ports=via_ports,
        )

    def listen_for(self, transport: str, host: str) -> Listen:
        """The listener that sends to ``host`` over ``transport``."""
        family_v6 = is_ipv6(host)
        fallback: Listen | None = None
        for listen in self.listens:
            if is_ipv6(listen.host) != family_v6:
                continue
            if listen.transport == transport:
                return listen
            fallback = fallback or listen
        return fallback or self.listens[0]

    def via(self, transport: str, host: str, branch: str) -> str:
        key = (transport, is_ipv6(host))
        prefix = self._via_prefixes.get(key)
        if prefix is None:
            listen = self.listen_for(transport, host)
            port = dict(self.via_ports).get((listen.transport, listen.host), listen.port)
            sent_by = host_port_text(listen.host, port)
            prefix = self._via_prefixes[key] = f"SIP/2.0/{transport.upper()} {sent_by};branch="
        return prefix + branch + ";rport"

    def record_route(self, transport: str, host: str) -> str:
        listen = self.listen_for(transport, host)
        uri = f"sip:{host_port_text(listen.host, listen.port)}"
        if transport == "tcp":
            uri += ";transport=tcp"
        return f"<{uri};lr>"

    def record_routes(self, inbound: Hop, outbound: Hop) -> list[str]:
        """Our Record-Route values, topmost first: one, or two when the
        request leaves on another listener than it came in on (RFC 5658)."""
        return list(self.record_route_values(inbound.transport, inbound.host, outbound.transport, outbound.host))

    def record_route_values(self, inbound_transport: str, inbound_host: str, outbound_transport: str,
                            outbound_host: str) -> tuple[str, ...]:
        """:meth:`record_routes` for a request that came in over ``inbound_transport``
        from ``inbound_host`` and leaves over ``outbound_transport`` to ``outbound_host``."""
        key = (inbound_transport, is_ipv6(inbound_host), outbound_transport, is_ipv6(outbound_host))
        values = self._record_routes.get(key)
        if values is None:
            inbound = Hop(host=inbound_host, port=0, transport=inbound_transport)
            outbound = Hop(host=outbound_host, port=0, transport=outbound_transport)
            values = self._record_routes[key] = tuple(self._work_out_record_routes(inbound, outbound))
        return values

    def _work_out_record_routes(self, inbound: Hop, outbound: Hop) -> list[str]:
        inbound_listen = self.listen_for(inbound.transport, inbound.host)
        outbound_listen = self.listen_for(outbound.transport, outbound.host)
        inbound_rr = self.record_route(inbound.transport, inbound.host)
        if inbound_listen == outbound_listen:
            return [inbound_rr]
        return [self.record_route(outbound.transport, outbound.host), inbound_rr]

    def is_own_address(self, host: str, port: int | None) -> bool:
        return (host, port or DEFAULT_PORT) in self.addresses

    def is_own_route(self, uri: SipUri | TelUri) -> bool:
        """A Route value naming us (a Record-Route we wrote, or an outbound
        proxy setting pointing at us)."""
        if not isinstance(uri, SipUri):
            return False
        if uri.user is None and uri.host == self.domain:
            return True
        return self.is_own_address(uri.host, uri.port)

    def is_local_uri(self, uri: SipUri | TelUri) -> bool:
        """A Request-URI for this PBX: our domain or one of our addresses."""
        if isinstance(uri, TelUri):
            return True
        return uri.host == self.domain or uri.host in self.hosts and (
            uri.port is None or self.is_own_address(uri.host, uri.port)
        )


def hop_for_uri(uri: SipUri | TelUri) -> Hop | None:
    """Where to send a request for ``uri`` without DNS, or None."""
    if not isinstance(uri, SipUri):
        return None
    host = literal_host(uri.host)
    if host is None:
        return None
    transport = "tcp" if uri.transport == "tcp" else "udp"
    return Hop(host=host, port=uri.port or DEFAULT_PORT, transport=transport)
