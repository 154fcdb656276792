"""Where a new request goes (RFC 3261 §16.3–§16.5): answered here, to the
registrar, along its Route set, or to the ring plan of the number it dials;
with the checks on the way (Max-Forwards, Proxy-Require, our domain, the
caller's credentials, forwarding loops, Max-Breadth).

A decision the core carries out (:class:`Answer`, :data:`TO_REGISTRAR`,
:class:`Forward`): nothing here sends, keeps a transaction or starts a call.
Checking credentials does count the nonces it sees (the authenticator's
replay window)."""

from __future__ import annotations

import logging
from collections.abc import Container
from datetime import datetime, timezone
from typing import Final

from attrs import frozen

from sipfork.config import Config
from sipfork.core.auth import Authenticator
from sipfork.core.effects import Log
from sipfork.core.interfaces import Interfaces, hop_for_uri
from sipfork.core.location import Location
from sipfork.core.upstream import caller_of
from sipfork.routing.plan import Branch, Hop, Otherwise, Plan, Refusal, Rule
from sipfork.routing.planner import plan_call
from sipfork.sip.message import Request
from sipfork.sip.uri import SipUri, TelUri

DEFAULT_MAX_FORWARDS = 70
DEFAULT_MAX_BREADTH = 60  # RFC 5393 §5
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, PRACK, REFER, MESSAGE, NOTIFY, SUBSCRIBE"

CallKey = tuple[str, str, int, str]  # Call-ID, From tag, CSeq number, the number dialled


@frozen(kw_only=True)
class Answer:
    """Answer the request here, with ``status``; ``log`` goes out after it."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    log: Log | None = None


@frozen
class ToRegistrar:
    """A REGISTER for our domain: the registrar's (RFC 3261 §10.3)."""


TO_REGISTRAR: Final = ToRegistrar()


@frozen(kw_only=True)
class Forward:
    """Proxy the request along ``plan`` (§16.6 for each branch)."""

    plan: Plan
    pop_routes: int  # how many of its topmost Route values are ours
    max_forwards: int  # already decremented: what every branch carries
    record_route: bool  # a dialog-creating request: we stay on the path
    max_breadth: int | None  # RFC 5393 value for each branch; None: leave it as is
    drop_headers: tuple[str, ...]  # our realm's credentials, consumed here
    call_key: CallKey | None  # a new call, for loop detection; None: in a dialog or routed
    caller: str  # for the call's log line


class Admission:
    """Decides for each new request that is not an ACK or a CANCEL (the
    core matches those to what it already has)."""

    def __init__(self, config: Config, interfaces: Interfaces, location: Location, authenticator: Authenticator, *,
                 client: Container[tuple[str, str]], calls: Container[CallKey]) -> None:
        """``client``: the keys (branch, method) of our client transactions,
        so a request we forked that comes back to us is known as ours;
        ``calls``: the calls ringing now, by :data:`CallKey`."""
        self.location = location
        self.authenticator = authenticator
        self._client = client
        self._calls = calls
        self.reload(config, interfaces)

    def reload(self, config: Config, interfaces: Interfaces) -> None:
        self.config = config
        self.interfaces = interfaces
        self.trusted = frozenset(host for gateway in config.gateways for host in gateway.inbound_from)
        self.zone = _zone(config.proxy.timezone)
        self._local_second: tuple[int, datetime] | None = None

    def decide(self, request: Request, source: tuple[str, int], now: float) -> Answer | ToRegistrar | Forward:
        method = request.method
        max_forwards = request.max_forwards
        if max_forwards is None:
            max_forwards = DEFAULT_MAX_FORWARDS
        pop_routes = self.own_routes(request)
        routes_left = len(request.routes) - pop_routes
        ruri = request.ruri
        to_us = routes_left == 0 and self.interfaces.is_local_uri(ruri) and (
            isinstance(ruri, SipUri) and ruri.user is None
        )
        if method == "OPTIONS" and (to_us or max_forwards <= 0 and request.to_tag is None):
            return Answer(status=200, headers=(("Allow", ALLOW), ("Accept", "application/sdp")))
        if max_forwards <= 0:
            return Answer(status=483)
        if request.has_header("Proxy-Require"):
            return Answer(status=420, headers=(("Unsupported", ", ".join(request.header_values("Proxy-Require"))),))
        if request.to_tag is not None or routes_left > 0:
            return self._routed(request, pop_routes, max_forwards - 1)
        if not self.interfaces.is_local_uri(ruri):
            return Answer(status=403, reason="Not Our Domain")
        if method == "REGISTER":
            return TO_REGISTRAR
        if to_us:
            return Answer(status=405 if method != "BYE" else 481, headers=(("Allow", ALLOW),))
        return self._to_plan(request, source, pop_routes, max_forwards - 1, now)

    def own_routes(self, request: Request) -> int:
        """How many of the topmost Route values name us (RFC 3261 §16.4)."""
        count = 0
        for route in request.routes:
            if not self.interfaces.is_own_route(route.uri):
                break
            count += 1
        return count

    def next_hop(self, request: Request, pop_routes: int) -> Hop | None:
        """Where a routed request goes: the next Route value, else the
        Request-URI — a registered contact of ours, or elsewhere (§16.5, §16.12);
        None for a Request-URI of our domain that is no contact."""
        routes = request.routes
        if len(routes) > pop_routes:
            return hop_for_uri(routes[pop_routes].uri)
        binding = self.location.find_contact(request.uri)
        if binding is not None:
            return binding.hop
        ruri = request.ruri
        if self.interfaces.is_local_uri(ruri):
            return None
        return hop_for_uri(ruri)

    def _routed(self, request: Request, pop_routes: int, max_forwards: int) -> Answer | Forward:
        """An in-dialog request, or one with a Route set beyond us: one branch."""
        hop = self.next_hop(request, pop_routes)
        if hop is None:
            return Answer(status=404 if request.to_tag is None else 481)
        spec = Branch(key="route", label=str(request.uri), request_uri=request.uri, hop=hop)
        plan = Plan(target=request.uri, rules=(Rule(name="route", ringing="parallel", branches=(spec,),
                                                    duration=None),), otherwise=Otherwise())
        return Forward(plan=plan, pop_routes=pop_routes, max_forwards=max_forwards, record_route=False,
                       max_breadth=None, drop_headers=(), call_key=None, caller="")

    def _to_plan(self, request: Request, source: tuple[str, int], pop_routes: int, max_forwards: int,
                 now: float) -> Answer | Forward:
        authorized = self._authorize(request, source, now)
        if isinstance(authorized, Answer):
            return authorized
        inbound, user = authorized
        ruri = request.ruri
        dialled = ruri.number if isinstance(ruri, TelUri) else (ruri.user or "")
        call_key = (request.call_id, request.from_tag or "", request.cseq.number, dialled)
        if call_key in self._calls and any(self.interfaces.is_own_address(v.host, v.port) for v in request.vias[1:]):
            # The same request came back to us for the same destination:
            # a forwarding loop, not a spiral (RFC 3261 §16.3 step 4).
            return Answer(status=482, log=Log(level=logging.WARNING,
                                              message=f"loop detected for {dialled} (Call-ID {request.call_id})"))
        caller = caller_of(request)
        outcome = plan_call(self.config, dialled=dialled, caller=caller, at=self._local_time(now),
                            registrations=self.location.snapshot(now), external_allowed=not inbound, now=now)
        if isinstance(outcome, Refusal):
            return Answer(status=outcome.status, reason=outcome.reason,
                          log=Log(level=logging.INFO, message=f"call {caller or 'anonymous'} → {dialled}: "
                                                              f"{outcome.status} {outcome.reason}"))
        plan = outcome
        if request.method != "INVITE":
            plan = plan.first_rule_only()
        breadth = request.header("Max-Breadth")
        incoming_breadth = int(breadth) if breadth and breadth.strip().isdigit() else DEFAULT_MAX_BREADTH
        width = max((len(rule.branches) for rule in plan.rules), default=1) or 1
        if width > incoming_breadth:
            return Answer(status=440)
        return Forward(plan=plan, pop_routes=pop_routes, max_forwards=max_forwards,
                       record_route=request.method in ("INVITE", "SUBSCRIBE", "REFER"),
                       max_breadth=incoming_breadth // width,
                       drop_headers=("Proxy-Authorization",) if user is not None else (),
                       call_key=call_key, caller=user or caller or "anonymous")

    def _authorize(self, request: Request, source: tuple[str, int], now: float) -> tuple[bool, str | None] | Answer:
        """(inbound from a trusted gateway, the authenticated user), or the
        challenge or refusal to answer with."""
        if source[0] in self.trusted or self._own_branch(request):
            # A request we forked ourselves that came back (a `sip:` target
            # naming us: a spiral, RFC 3261 §16.3 step 4) was authorized on
            # its first pass; it may ring our users and numbers as an
            # inbound call does, but not dial out.
            return True, None
        result = self.authenticator.check(request, source_host=source[0], now=now, proxy=True)
        if result.status == "ok" and result.user is not None:
            return False, result.user.name
        if result.status in ("missing", "stale"):
            headers = self.authenticator.challenge(realm=self.config.proxy.domain, source_host=source[0], now=now,
                                                   proxy=True, user=result.user, stale=result.status == "stale")
            return Answer(status=407, headers=tuple(headers))
        return Answer(status=403)

    def _own_branch(self, request: Request) -> bool:
        """Whether the top Via is ours with the branch of a client
        transaction of ours still alive: we sent this very request."""
        via = request.top_via
        return (via.branch is not None and (via.branch, request.method) in self._client
                and self.interfaces.is_own_address(via.host, via.port))

    def _local_time(self, now: float) -> datetime:
        """The wall-clock time in the configured zone, to the second (rules
        go by the minute at most); worked out once a second, not per call."""
        second = int(now)
        known = self._local_second
        if known is None or known[0] != second:
            known = self._local_second = (second, datetime.fromtimestamp(second, tz=timezone.utc).astimezone(self.zone))
        return known[1]


def _zone(name: str):  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)
