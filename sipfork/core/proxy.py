"""The sans-IO core: a registrar and stateful forking proxy (RFC 3261 §16).

Bytes, the time and the configuration go in (:meth:`Core.receive`,
:meth:`Core.handle_timer`, :meth:`Core.reload`); bytes to send, bindings to
store and log records come out (:meth:`Core.effects`), with the earliest
deadline in :meth:`Core.next_deadline`. The shell applies effects in order:
first what a message made at once (``effects(settle=False)``: a call's
branches, an answer for the caller), then, after :meth:`Core.settle`, the
rest (the 100 Trying, CANCELs, transactions, the call's log line).

The core takes requests in (server transactions, the registrar) and
carries out what :mod:`sipfork.core.admission` decides for each new one
(answer it, register it, or proxy it along a plan); what goes out to the
branches and comes back from them (client transactions, CANCEL, answers
upstream) is :mod:`sipfork.core.forwarder`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from attrs import evolve

from sipfork.bindings import Binding
from sipfork.config import Config
from sipfork.core.admission import DEFAULT_MAX_FORWARDS, Admission, Answer, CallKey, Forward
from sipfork.core.auth import Authenticator
from sipfork.core.context import CallContext
from sipfork.core.deadlines import Deadlines
from sipfork.core.effects import Effect, Log, RegisterAnswer, Send, answered_by
from sipfork.core.forwarder import ClientEntry, Forwarder
from sipfork.core.ids import Ids
from sipfork.core.interfaces import Interfaces
from sipfork.core.kept import KeptAnswers, ServerKey, key_text
from sipfork.core.location import Location
from sipfork.core.registrar import Registrar
from sipfork.core.transactions import ServerState, ServerTransaction, Terminated, TimedOut, Timers, response_destination
from sipfork.core.upstream import Upstream, via_marks
from sipfork.sip.builder import build_response
from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.message import InvalidRequest, Request, Response, parse_message


class Core:
    """One proxy worker's protocol state."""

    def __init__(self, config: Config, *, ids: Ids, bindings: Iterable[Binding] = (),
                 timers: Timers | None = None, secret: bytes | None = None,
                 via_ports: tuple[tuple[tuple[str, str], int], ...] = ()) -> None:
        """``secret`` signs nonces: workers share one so that a nonce from
        one is good at another; ``via_ports`` are this worker's own ports."""
        self.ids = ids
        self.timers = timers or Timers()
        self.via_ports = via_ports
        self.location = Location(bindings)
        self.authenticator = Authenticator(config, secret=secret or ids.secret())
        self.registrar = Registrar(config, self.location, self.authenticator, ids)
        self.interfaces = Interfaces.from_config(config, via_ports)
        self._effects: list[Effect] = []
        self._server: dict[ServerKey, ServerTransaction] = {}
        self._server_keys: dict[ServerTransaction, tuple[ServerKey, bytes]] = {}
        self._raw: dict[bytes, ServerTransaction] = {}  # exact retransmissions, dropped unparsed
        self._kept = KeptAnswers()  # responses standing in for finished transactions
        self._contexts: dict[ServerTransaction, CallContext] = {}
        self._calls: dict[CallKey, CallContext] = {}  # loop detection
        self._call_keys: dict[CallContext, CallKey] = {}  # the way back
        self._deadlines = Deadlines()
        self._schedule = self._deadlines.touch  # bound once: called a few dozen times per call
        self._unschedule = self._deadlines.forget
        self._expiry: float | None = None  # see _next_expiry
        self._expiry_known = False
        # The branches' side: it shares this core's effects list and timer
        # heap, so it is called directly, not through the core.
        self.forwarder = Forwarder(config, self.interfaces, ids=ids, timers=self.timers, effects=self._effects,
                                   schedule=self._schedule, unschedule=self._unschedule,
                                   server_outputs=self._server_outputs)
        # Its tables and its response entry point, bound once: the
        # per-message path reaches them without a lookup through it.
        self._client = self.forwarder.transactions
        self._unsettled = self.forwarder.unsettled
        self._after_sends = self.forwarder.after_sends
        # INVITEs whose 100 Trying is made in settle(), after their branches left.
        self._owed_trying: list[tuple[ServerTransaction, Request, float]] = []
        self._receive_response = self.forwarder.receive_response
        self.admission = Admission(config, self.interfaces, self.location, self.authenticator,
                                   client=self._client, calls=self._calls)

    def reload(self, config: Config, now: float) -> None:
        """Use a new configuration for new requests; calls in progress keep
        the plan they started with."""
        self.interfaces = Interfaces.from_config(config, self.via_ports)
        self.forwarder.reload(config, self.interfaces)
        self.admission.reload(config, self.interfaces)
        self.authenticator.reload(config)
        self.registrar.reload(config)
        self._log(logging.INFO, "configuration reloaded")

    # -- the shell's side ------------------------------------------------

    def effects(self, *, settle: bool = True) -> list[Effect]:
        """What the core wants done, in order. ``settle=False`` is for the
        shell: only what the last message made at once (a new call's
        branches, an answer going to the caller), which it sends before
        calling :meth:`settle` and taking the rest (the 100 Trying, the
        CANCELs of the other branches)."""
        if settle:
            self.settle()
        # The list stays the same object (the forwarder appends to it too):
        # a copy goes out, the list is emptied.
        effects = self._effects.copy()
        self._effects.clear()
        return effects

    def settle(self) -> None:
        """Finish what the last message left for after its sends: the
        branches' client transactions, the CANCELs and the call log line
        (:meth:`Forwarder.settle`), and the 100 Trying that only stops the
        caller's retransmissions (RFC 3261 §16.2, §17.2.1: the first comes
        500 ms later). Every entry point calls it first, so nothing can find
        them missing; with nothing left over it only looks at three lists."""
        if self._unsettled or self._after_sends:
            self.forwarder.settle()
        if self._owed_trying:
            try:
                for transaction, request, now in self._owed_trying:
                    self._respond(transaction, request, 100, now)
            finally:
                self._owed_trying.clear()  # as Forwarder.settle: never wedged by one that raised

    def next_deadline(self) -> float | None:
        """The earliest deadline of anything the core waits for; the shell
        asks after carrying out each batch of effects (it also arms what
        the batch changed)."""
        self.settle()
        earliest = self._deadlines.earliest()
        kept = self._kept.next_deadline()
        if kept is not None and (earliest is None or kept < earliest):
            earliest = kept
        expiry = self._expiry if self._expiry_known else self._next_expiry()
        if expiry is not None and (earliest is None or expiry < earliest):
            earliest = expiry
        return earliest

    def handle_timer(self, now: float) -> None:
        self.settle()
        self._kept.expire(now)
        for obj in self._deadlines.due(now):
            # Touched first: forgetting it while handling it (its last
            # timer, the usual case) takes the touch back, so a finished
            # transaction is not looked at again.
            self._schedule(obj)
            try:
                if isinstance(obj, ClientEntry):
                    self.forwarder.handle_timer(obj, now)
                elif isinstance(obj, ServerTransaction):
                    self._server_outputs(obj, obj.handle_timer(now))
                elif isinstance(obj, CallContext):
                    obj.handle_timer(now)
            except Exception:
                # Our bug, logged by the shell: the object is not armed again
                # (its deadline may not have moved: it would fail every tick),
                # and the others due wait for the next pass.
                self._unschedule(obj)
                raise
        expiry = self._next_expiry()
        if expiry is not None and expiry <= now:
            self._expiry_known = False
            for drop in self.location.expire(now):
                self._effects.append(drop)
                self._log(logging.INFO, f"registration expired: {drop.user} {drop.contact}")

    def _next_expiry(self) -> float | None:
        """The location table's earliest expiry, asked again only after the
        table changed (the shell wants the next deadline after every message;
        only the registrar, expiry and other workers change the table)."""
        if not self._expiry_known:
            self._expiry = self.location.next_expiry()
            self._expiry_known = True
        return self._expiry

    def binding_saved(self, binding: Binding) -> None:
        """Another worker stored a binding (shared store)."""
        self._expiry_known = False
        self.location.put(binding)

    def binding_dropped(self, user: str, contact: str) -> None:
        self._expiry_known = False
        self.location.drop(user, contact)

    def store_failed(self, effects: list[Effect]) -> list[Effect]:
        """The store did not take the binding changes among ``effects`` (the
        shell's write of them failed): the location table goes back to what
        the store has, and each REGISTER that made a change is answered 500
        instead of 200, now and when it comes again. Returns ``effects`` with
        those answers in place of the 200s, for the shell to carry out."""
        self._expiry_known = False
        answers = self.registrar.store_failed(effects)
        # A retransmission that came before the write was answered from the
        # kept 200: a Send of its own around the very same bytes.
        kept_200s: dict[int, bytes] = {}
        for key, send in answers.values():
            kept = self._kept.by_key.get(key)
            if kept is not None:
                kept_200s[id(kept)] = send.data
            self._kept.replace(key, send.data)  # until Timer J, as the 200 would have been
        out: list[Effect] = []
        for effect in effects:
            if id(effect) in answers:
                out.append(answers[id(effect)][1])
            elif isinstance(effect, Send) and id(effect.data) in kept_200s:
                out.append(evolve(effect, data=kept_200s[id(effect.data)]))
            else:
                out.append(effect)
        return out

    def replace_bindings(self, bindings: Iterable[Binding]) -> None:
        """The store's whole table, when its change log no longer reaches back."""
        self._expiry_known = False
        for old in self.location.all():
            self.location.drop(old.user, old.contact)
        for binding in bindings:
            self.location.put(binding)

    def receive(self, data: bytes, source: tuple[str, int], transport: str, now: float) -> None:
        """One datagram, or one framed message from a stream."""
        self.settle()
        retransmitted = self._raw.get(data)
        if retransmitted is not None:
            self._emit(retransmitted.receive_request(now))
            self._schedule(retransmitted)
            return
        try:
            message = parse_message(data)
        except InvalidRequest as error:
            self._log(logging.WARNING, f"bad request from {source[0]}:{source[1]}: {error}")
            if error.request.method != "ACK":
                self._reply_stateless(error.request, error.status, source, transport, reason=str(error))
            return
        except RemoteProtocolError as error:
            self._log(logging.WARNING, f"dropped malformed message from {source[0]}:{source[1]}: {error}")
            return
        try:
            if isinstance(message, Response):
                self._receive_response(message, now)
            else:
                self._receive_request(message, data, source, transport, now)
        except RemoteProtocolError as error:
            self._log(logging.WARNING, f"bad message from {source[0]}:{source[1]}: {error}")
            if isinstance(message, Request) and message.method != "ACK":
                self._reply_stateless(message, error.status, source, transport, reason=str(error))

    # -- effects and timers ----------------------------------------------

    def _emit(self, sends: Iterable[Effect]) -> None:
        self._effects.extend(sends)

    def _log(self, level: int, message: str) -> None:
        self._effects.append(Log(level=level, message=message))

    # -- requests ----------------------------------------------------------

    def _receive_request(self, request: Request, data: bytes, source: tuple[str, int],
                         transport: str, now: float) -> None:
        via = request.top_via
        method = request.method
        # Host and method interned: a key may outlive its request by 32 s (Timer J).
        key: ServerKey = (via.branch or "", sys.intern(via.host), via.port or 0,
                          "INVITE" if method == "ACK" else sys.intern(method))
        if method == "ACK":
            self._receive_ack(request, key, source, transport, now)
            return
        known = self._server.get(key)
        if known is not None:
            self._emit(known.receive_request(now))
            self._schedule(known)
            return
        kept = self._kept.get(key)
        if kept is not None:
            # Completed: the request again gets the response again.
            host, port = response_destination(via, source, transport)
            self._effects.append(Send(data=kept, host=host, port=port, transport=transport))
            return
        transaction = ServerTransaction(request, source=source, transport=transport, now=now, timers=self.timers)
        self._server[key] = transaction
        self._server_keys[transaction] = (key, data)
        self._raw[data] = transaction
        if method == "CANCEL":
            self._receive_cancel(request, transaction, key, now)
        elif method == "INVITE":
            self._new_request(request, transaction, source, transport, now)
            if not transaction.answered:  # one answered at once (a challenge, a refusal) needs none
                self._owed_trying.append((transaction, request, now))
        else:
            self._new_request(request, transaction, source, transport, now)
        self._schedule(transaction)

    def _respond(self, transaction: ServerTransaction, request: Request, status: int, now: float, *,
                 reason: str | None = None, headers: Iterable[tuple[str, str]] = (), to_tag: str | None = None) -> None:
        source = transaction.source
        received, rport = via_marks(request.top_via, source)
        data = build_response(request, status, reason, to_tag=to_tag or self.ids.tag(), received=received,
                              rport=rport, headers=tuple(headers))
        self._server_outputs(transaction, transaction.respond(data, status, now))
        self._schedule(transaction)

    def _reply_stateless(self, request: Request, status: int, source: tuple[str, int], transport: str,
                         reason: str | None = None) -> None:
        try:
            received, rport = via_marks(request.top_via, source)
            data = build_response(request, status, reason, to_tag=self.ids.tag(), received=received, rport=rport)
        except RemoteProtocolError:
            return  # not even a Via to answer to: dropped, and logged by the caller
        self._effects.append(Send(data=data, host=source[0], port=source[1], transport=transport))

    def _new_request(self, request: Request, transaction: ServerTransaction, source: tuple[str, int],
                     transport: str, now: float) -> None:
        decision = self.admission.decide(request, source, now)
        if isinstance(decision, Forward):
            self._start_context(request, transaction, decision, source, transport, now)
        elif isinstance(decision, Answer):
            self._respond(transaction, request, decision.status, now, reason=decision.reason,
                          headers=decision.headers)
            if decision.log is not None:
                self._effects.append(decision.log)
        else:
            self._register(request, transaction, source, transport, now)

    def _register(self, request: Request, transaction: ServerTransaction, source: tuple[str, int],
                  transport: str, now: float) -> None:
        self._expiry_known = False
        result = self.registrar.handle(request, source=source, transport=transport, now=now)
        if result.status == 401:
            self._emit(result.effects)
            # A challenge goes out statelessly (RFC 3261 §8.2.7): no
            # transaction, so floods of unauthenticated requests leave no
            # state for Timer J (§26.1.5). Its bytes are kept for 8*T1 only,
            # so that the first retransmissions get the very same 401 (a
            # UA without a transaction layer, such as SIPp, takes a fresh
            # challenge for a new response); later ones get a fresh one.
            host, port = transaction.destination
            send = Send(data=result.response, host=host, port=port, transport=transport)
            self._effects.append(send)
            key = self._server_keys[transaction][0]
            self._forget_server(transaction)
            if transport != "tcp":
                self._kept.keep_challenge(key, send.data, now + 8 * self.timers.t1)
            return
        outputs = transaction.respond(result.response, result.status, now)
        # Stored before the 200 OK leaves (DESIGN.md); each change names
        # the REGISTER and its 200, for when the store fails (store_failed).
        key = key_text(self._server_keys[transaction][0])
        answer = RegisterAnswer(request=request, source=source, key=key,
                                response=next(output for output in outputs if isinstance(output, Send)))
        self._emit(answered_by(result.effects, answer))
        self._server_outputs(transaction, outputs)

    def _start_context(self, request: Request, transaction: ServerTransaction, forward: Forward,
                       source: tuple[str, int], transport: str, now: float) -> None:
        # A routed request in a dialog whose gateway leg answered a
        # challenge counts CSeq as that leg does.
        call_key = forward.call_key
        shift = self.forwarder.dialog_shift(request) if call_key is None else 0
        received, rport = via_marks(request.top_via, source)
        upstream = Upstream(transaction=transaction, source=source, transport=transport, to_tag=self.ids.tag(),
                            max_forwards=forward.max_forwards, pop_routes=forward.pop_routes,
                            record_route=forward.record_route, received=received, rport=rport,
                            max_breadth=forward.max_breadth, drop_headers=forward.drop_headers,
                            caller=forward.caller, cseq_shift=shift)
        context = CallContext(request=request, plan=forward.plan, forwarder=self.forwarder, upstream=upstream,
                              started=now, is_invite=request.method == "INVITE")
        self._contexts[transaction] = context
        if call_key is not None:
            self._calls[call_key] = context
            self._call_keys[context] = call_key
        context.start(now)
        self._schedule(context)

    def _receive_ack(self, request: Request, key: ServerKey, source: tuple[str, int], transport: str,
                     now: float) -> None:
        transaction = self._server.get(key)
        if transaction is not None and transaction.state in (ServerState.COMPLETED, ServerState.CONFIRMED):
            self._server_outputs(transaction, transaction.receive_ack(now))
            self._schedule(transaction)
            return
        # The ACK for a 2xx is a request of its own: forwarded statelessly
        # along the route set.
        pop_routes = self.admission.own_routes(request)
        hop = self.admission.next_hop(request, pop_routes)
        max_forwards = request.max_forwards
        if hop is None or (max_forwards is not None and max_forwards <= 0):
            return
        if max_forwards is None:
            max_forwards = DEFAULT_MAX_FORWARDS
        received, rport = via_marks(request.top_via, source)
        self.forwarder.forward_ack(request, hop, max_forwards=max_forwards - 1, received=received, rport=rport,
                                   pop_routes=pop_routes)

    def _receive_cancel(self, request: Request, transaction: ServerTransaction, key: ServerKey, now: float) -> None:
        invite = self._server.get((key[0], key[1], key[2], "INVITE"))
        context = self._contexts.get(invite) if invite is not None else None
        if context is None:
            self._respond(transaction, request, 481, now)
            return
        self._respond(transaction, request, 200, now, to_tag=context.upstream.to_tag)
        context.cancel_by_caller(request.header("Reason"), now)
        self._schedule(context)

    def _server_outputs(self, transaction: ServerTransaction, outputs: list[object]) -> None:
        for output in outputs:
            if isinstance(output, Send):
                self._effects.append(output)
                if (not transaction.is_invite and transaction.state is ServerState.COMPLETED
                        and transaction not in self._contexts):
                    self._keep_response_only(transaction, output)
            elif isinstance(output, TimedOut):
                self._log(logging.DEBUG, "no ACK for a final response (Timer H)")
            elif isinstance(output, Terminated):
                self._forget_server(transaction)

    def _keep_response_only(self, transaction: ServerTransaction, response: Send) -> None:
        """Replace a Completed non-INVITE transaction by its response until
        Timer J (over TCP it has already terminated: nothing to keep)."""
        timer_j = transaction.deadline()
        key, _ = self._server_keys.get(transaction, (None, b""))
        if timer_j is None or key is None:
            return
        self._forget_server(transaction)
        transaction.abandon()
        self._kept.keep_completed(key, response.data, timer_j)

    def _forget_server(self, transaction: ServerTransaction) -> None:
        key, data = self._server_keys.pop(transaction, (None, b""))
        if key is not None and self._server.get(key) is transaction:
            del self._server[key]
        if self._raw.get(data) is transaction:
            del self._raw[data]
        self._unschedule(transaction)
        context = self._contexts.pop(transaction, None)
        if context is not None:
            call_key = self._call_keys.pop(context, None)
            if call_key is not None and self._calls.get(call_key) is context:
                del self._calls[call_key]
