"""The proxy's downstream side: branches, their client transactions, and the
way answers go back upstream (RFC 3261 §16.6-16.7, §16.10, §16.11, §22.2).

A :class:`~sipfork.core.context.CallContext` decides what rings; the
:class:`Forwarder` carries it out: it builds each branch by edits of the
received request, owns the client transactions (keyed by Via branch and
method, so a response finds its branch without a search), sends CANCELs,
answers gateway challenges and hands responses back to the context and the
caller's server transaction.

It is not a layer of its own but half of the core: it appends to the core's
effects list and arms timers through the core's scheduler, both shared by
reference, so the per-message path calls it directly with no extra hop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from sipfork.config import Config
from sipfork.core.context import BranchState, CallContext
from sipfork.core.effects import Effect, Log, Send
from sipfork.core.gateway_auth import answer_challenge
from sipfork.core.ids import MAGIC_COOKIE, Ids
from sipfork.core.interfaces import Interfaces
from sipfork.core.transactions import (
    ClientTransaction,
    Deliver,
    ServerState,
    ServerTransaction,
    Terminated,
    TimedOut,
    Timers,
)
from sipfork.routing.plan import Branch, Hop
from sipfork.sip.builder import build_cancel, build_response
from sipfork.sip.edits import ForwardTemplate, forward_request, forward_response
from sipfork.sip.message import Request, Response

ClientKey = tuple[str, str]  # (Via branch, method): RFC 3261 §17.1.3
DialogKey = tuple[str, str]  # (Call-ID, caller's From tag)


class ClientEntry:
    """A client transaction with the branch it serves (None for a CANCEL)."""

    __slots__ = ("key", "transaction", "context", "branch", "deadline")

    def __init__(self, key: ClientKey, transaction: ClientTransaction, context: CallContext | None,
                 branch: BranchState | None) -> None:
        self.key = key
        self.transaction = transaction
        self.context = context
        self.branch = branch
        self.deadline = transaction.deadline  # what the timer heap asks (one call, not two)


class Forwarder:
    """The client transactions of one core, and what a context asks of them
    (it satisfies :class:`sipfork.core.context.Forwarder`)."""

    def __init__(self, config: Config, interfaces: Interfaces, *, ids: Ids, timers: Timers,
                 effects: list[Effect], schedule: Callable[[object], None], unschedule: Callable[[object], None],
                 server_outputs: Callable[[ServerTransaction, list[object]], None]) -> None:
        """``effects`` is the core's own list (the shell reads it in order);
        ``schedule`` / ``unschedule`` arm and disarm an object's deadline on
        the core's one timer heap; ``server_outputs`` carries out what the
        caller's server transaction returns (the core owns those)."""
        self.config = config
        self.interfaces = interfaces
        self.ids = ids
        self.timers = timers
        self._effects = effects
        self._schedule = schedule
        self._unschedule = unschedule
        self._server_outputs = server_outputs
        # Read by the core too: a request whose top Via carries one of these
        # branches is one we sent (a spiral, RFC 3261 §16.3 step 4).
        self.transactions: dict[ClientKey, ClientEntry] = {}
        # How much higher the callee's leg counts CSeq, for dialogs whose
        # gateway leg answered a challenge; the core reads it for in-dialog
        # requests and drops a dialog's entry at its BYE.
        self.cseq_shifts: dict[DialogKey, int] = {}
        self._template: tuple[tuple[object, ...], ForwardTemplate] | None = None
        # Branches sent whose client transactions are not made yet (settle);
        # the core looks at it to know when to call settle().
        # (context, branch, its bytes, the template and Via they came from, when sent).
        self.unsettled: list[tuple[CallContext, BranchState, Send, ForwardTemplate, str, float]] = []
        # What waits for the same: CANCELs asked for (context, branch,
        # Reason, when) and the call log line, so that a 2xx reaches the
        # caller before they are made (the core looks at it too).
        self.after_sends: list[tuple[CallContext, BranchState, str | None, float] | Log] = []

    def reload(self, config: Config, interfaces: Interfaces) -> None:
        self.config = config
        self.interfaces = interfaces

    def _log(self, level: int, message: str) -> None:
        self._effects.append(Log(level=level, message=message))

    # -- branches (the context's Forwarder protocol) ------------------------

    def fork(self, context: CallContext, spec: Branch, rule_index: int, now: float) -> BranchState:
        return self._send_branch(context, spec, rule_index, now, cseq_shift=context.upstream.cseq_shift)

    def authenticate(self, context: CallContext, branch: BranchState, response: Response,
                     now: float) -> BranchState | None:
        """Answer a gateway's 401/407 with its credentials (RFC 3261 §22.2):
        the same INVITE on a new branch, its CSeq one higher."""
        gateway = self.config.gateway(branch.spec.gateway or "")
        if gateway is None or gateway.username is None or gateway.password is None:
            return None
        header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        credentials = answer_challenge(response.header_lines(header), username=gateway.username,
                                       password=gateway.password, method=context.request.method,
                                       uri=branch.spec.request_uri, cnonce=self.ids.token(8))
        if credentials is None:
            self._log(logging.WARNING, f"gateway {gateway.name} challenged with no digest algorithm we know")
            return None
        name = "Authorization" if response.status == 401 else "Proxy-Authorization"
        retry = self._send_branch(context, branch.spec, branch.rule_index, now, credentials=(name, credentials),
                                  cseq_shift=branch.cseq_shift + 1)
        retry.authenticated = True
        return retry

    def _send_branch(self, context: CallContext, spec: Branch, rule_index: int, now: float, *,
                     credentials: tuple[str, str] | None = None, cseq_shift: int = 0) -> BranchState:
        upstream = context.upstream
        request = context.request
        branch_id = self.ids.branch()
        hop = spec.hop
        record_route = self.interfaces.record_route_values(upstream.transport, upstream.source[0], hop.transport,
                                                           hop.host) if upstream.record_route else ()
        headers = spec.headers
        drop = upstream.drop_headers
        if upstream.max_breadth is not None:
            headers = (*headers, ("Max-Breadth", str(upstream.max_breadth)))
            drop = (*drop, "Max-Breadth")
        if credentials is not None:
            headers = (*headers, credentials)
        # Every branch of a fork usually shares all edits but the Via and the
        # Request-URI: work them out once (the template of the last fork is kept).
        template_key = (request, record_route, headers, drop, cseq_shift)
        if self._template is not None and self._template[0] == template_key:
            template = self._template[1]
        else:
            template = ForwardTemplate(request, max_forwards=upstream.max_forwards, received=upstream.received,
                                       rport=upstream.rport, pop_routes=upstream.pop_routes,
                                       record_route=record_route, add_headers=headers, drop_headers=drop,
                                       cseq=request.cseq.number + cseq_shift if cseq_shift else None)
            self._template = (template_key, template)
        via = self.interfaces.via(hop.transport, hop.host, branch_id)
        data = template.build(via=via, request_uri=spec.request_uri)
        send = Send(data=data, host=hop.host, port=hop.port, transport=hop.transport, alternate=hop.alternate)
        self._effects.append(send)
        state = BranchState(id=branch_id, spec=spec, rule_index=rule_index, cseq_shift=cseq_shift)
        # The branch's client transaction is made in settle(), once the shell
        # has sent what this message produced: a fork's last INVITE leaves
        # that much sooner. Nothing can reach the transaction before then.
        self.unsettled.append((context, state, send, template, via, now))
        return state

    def settle(self) -> None:
        """Make the client transactions of the branches sent since the last
        call, then the CANCELs and log lines that waited for the sends. The
        core calls it first thing in each of its entry points, and the shell
        once it has sent what a message made at once.

        The lists are emptied even when making one raises (our bug): an
        entry left in them would raise again at every later message."""
        if self.unsettled:
            self._make_branch_transactions()
        if self.after_sends:
            try:
                for item in self.after_sends:
                    if isinstance(item, Log):
                        self._effects.append(item)
                    else:
                        self._send_cancel(*item)
            finally:
                self.after_sends.clear()

    def _make_branch_transactions(self) -> None:
        try:
            for context, state, send, template, via, now in self.unsettled:
                method = context.request.method
                lines = (template.invite_lines(via=via, request_uri=state.spec.request_uri) if context.is_invite
                         else None)
                transaction = ClientTransaction(send.data, method=method, hop=state.spec.hop, now=now,
                                                timers=self.timers, lines=lines, sent=send)
                entry = ClientEntry((state.id, method), transaction, context, state)
                self.transactions[entry.key] = entry
                self._schedule(entry)
        finally:
            self.unsettled.clear()

    def cancel(self, context: CallContext, branch: BranchState, reason: str | None, now: float) -> None:
        """CANCEL ``branch`` (made in settle(), after this message's sends)."""
        self.after_sends.append((context, branch, reason, now))

    def _send_cancel(self, context: CallContext, branch: BranchState, reason: str | None, now: float) -> None:
        entry = self.transactions.get((branch.id, context.request.method))
        if entry is None:
            return
        data = build_cancel(entry.transaction.invite_lines, headers=(("Reason", reason),) if reason else ())
        self._client_outputs(entry, entry.transaction.cancelled(now), now)
        self._schedule(entry)
        transaction = ClientTransaction(data, method="CANCEL", hop=entry.transaction.hop, now=now,
                                        timers=self.timers)
        cancel = ClientEntry((branch.id, "CANCEL"), transaction, None, None)
        self.transactions[cancel.key] = cancel
        self._effects.extend(transaction.start())
        self._schedule(cancel)

    def respond(self, context: CallContext, status: int, now: float, *, response: Response | None = None,
                headers: tuple[tuple[str, str], ...] = ()) -> None:
        upstream = context.upstream
        if response is not None:
            self._send_upstream(context, forward_response(response), status, now)
            return
        received, rport = upstream.received, upstream.rport
        data = build_response(context.request, status, to_tag=upstream.to_tag, received=received, rport=rport,
                              headers=headers)
        self._send_upstream(context, data, status, now)

    def _send_upstream(self, context: CallContext, data: bytes, status: int, now: float) -> None:
        transaction = context.upstream.transaction
        if transaction.state in (ServerState.TRYING, ServerState.PROCEEDING) or (
            transaction.state is ServerState.ACCEPTED and 200 <= status < 300
        ):
            self._server_outputs(transaction, transaction.respond(data, status, now))
            self._schedule(transaction)
            return
        if 200 <= status < 300 and context.is_invite:
            # A 2xx after the caller's transaction ended (it cancelled, or
            # took another answer): still forwarded (RFC 3261 §16.7 step 5),
            # since each makes a dialog. A non-INVITE has one final answer.
            source = context.upstream.source
            self._effects.append(Send(data=data, host=source[0], port=source[1], transport=context.upstream.transport))

    def forward_answer(self, context: CallContext, branch: BranchState, response: Response, now: float) -> None:
        """A 2xx goes upstream as it is (with the caller's CSeq number)."""
        cseq = None
        if branch.cseq_shift:
            cseq = context.request.cseq.number
            if context.request.method == "INVITE":
                # The dialog's later requests from the caller count the same way.
                self.cseq_shifts[(context.request.call_id, context.request.from_tag or "")] = branch.cseq_shift
        self._send_upstream(context, forward_response(response, cseq=cseq), response.status, now)

    def log_call(self, context: CallContext, outcome: str, now: float) -> None:
        request = context.request
        if request.method != "INVITE" or context.plan.target == request.uri:
            return
        branches = len(context.branches)
        # After this message's sends, as the CANCELs: writing it is not on their way.
        self.after_sends.append(Log(level=logging.INFO, message=(
            f"call {context.upstream.caller} → {context.plan.target}: {outcome}; "
            f"{branches} branch{'es' if branches != 1 else ''}; {now - context.started:.1f}s")))

    def dialog_shift(self, request: Request) -> int:
        """How much higher the callee's leg counts CSeq than ``request``'s
        sender, for an in-dialog request of a dialog whose gateway leg
        answered a challenge (0 for any other). A BYE from either end ends
        the dialog's entry: the callee's BYE carries the caller's tag as its
        To tag, and its own CSeq numbers need no shift."""
        shifts = self.cseq_shifts
        if not shifts:
            return 0
        dialog = (request.call_id, request.from_tag or "")
        shift = shifts.get(dialog, 0)
        if request.method == "BYE":
            shifts.pop(dialog, None)
            shifts.pop((request.call_id, request.to_tag or ""), None)
        return shift

    # -- stateless forwarding ------------------------------------------------

    def forward_ack(self, request: Request, hop: Hop, *, max_forwards: int, received: str | None,
                    rport: int | None, pop_routes: int) -> None:
        """The ACK for a 2xx is a request of its own, end to end (§13.2.2.4),
        forwarded statelessly along the route set."""
        # A stateless branch is a hash of the received one (§16.11), so a
        # retransmitted ACK leaves with the same branch. Python's own string
        # hash: an ACK comes once a call, and SHA-1's code, run for nothing
        # else, took ~45 µs from cold caches against ~25 (benchmarks/README.md).
        # Seeded per process, which is enough: the ACK's retransmissions come
        # to the same process (the same source, the same worker).
        incoming = request.top_via.branch or request.call_id
        branch = f"{MAGIC_COOKIE}{hash(incoming) & 0xFFFFFFFFFFFFFFFF:016x}"
        shift = self.dialog_shift(request)
        data = forward_request(request, via=self.interfaces.via(hop.transport, hop.host, branch),
                               max_forwards=max_forwards, received=received, rport=rport, pop_routes=pop_routes,
                               cseq=request.cseq.number + shift if shift else None)
        self._effects.append(Send(data=data, host=hop.host, port=hop.port, transport=hop.transport))

    def _forward_stray(self, response: Response) -> None:
        """A 2xx retransmission after its transaction is gone goes on along
        the Via path (RFC 3261 §16.7, RFC 6026); anything else is dropped."""
        vias = response.vias
        if not (200 <= response.status < 300 and response.cseq.method == "INVITE" and len(vias) > 1):
            return
        if not self.interfaces.is_own_address(vias[0].host, vias[0].port):
            return
        upstream_via = vias[1]
        host, port = upstream_via.response_address()
        self._effects.append(Send(data=forward_response(response), host=host, port=port,
                                  transport=upstream_via.transport.lower()))

    # -- responses and timers of the client transactions ---------------------

    def receive_response(self, response: Response, now: float) -> None:
        via = response.top_via
        entry = self.transactions.get((via.branch or "", response.cseq.method))
        if entry is None:
            self._forward_stray(response)
            return
        self._client_outputs(entry, entry.transaction.receive_response(response, now), now)
        self._schedule(entry)

    def handle_timer(self, entry: ClientEntry, now: float) -> None:
        """``entry``'s deadline passed (the core re-arms it afterwards)."""
        self._client_outputs(entry, entry.transaction.handle_timer(now), now)

    def _client_outputs(self, entry: ClientEntry, outputs: Iterable[object], now: float) -> None:
        context, branch = entry.context, entry.branch
        for output in outputs:
            if isinstance(output, Send):
                self._effects.append(output)
            elif context is None or branch is None:
                if isinstance(output, Terminated):
                    self._forget_client(entry)
            elif isinstance(output, Deliver):
                self._deliver(context, branch, output.response, now)
            elif isinstance(output, TimedOut):
                context.branch_timed_out(branch, now)
                self._schedule(context)
            elif isinstance(output, Terminated):
                self._forget_client(entry)

    def _forget_client(self, entry: ClientEntry) -> None:
        if self.transactions.get(entry.key) is entry:
            del self.transactions[entry.key]
        self._unschedule(entry)
        if entry.branch is not None:
            entry.branch.live = False

    def _deliver(self, context: CallContext, branch: BranchState, response: Response, now: float) -> None:
        # A branch that counts CSeq differently gets the caller's number back.
        cseq = context.request.cseq.number if branch.cseq_shift else None
        if response.status < 200:
            if context.receive_provisional(branch, response, now):
                self._send_upstream(context, forward_response(response, cseq=cseq), response.status, now)
        else:
            context.receive_final(branch, response, now)
        self._schedule(context)
