"""The registrar (RFC 3261 §10.3): REGISTER in, response bytes and store effects out.

Pure: time comes in as ``now``, to-tags from the injected ``Ids``. The
registrar changes the ``Location`` it was given *and* returns the same
changes as ``SaveBinding`` / ``DropBinding`` effects, in order; the shell
writes them to the store before it sends ``response`` (DESIGN.md), so an
acknowledged registration survives a crash.

Decisions where RFC 3261 leaves a choice (all constructor arguments):

- The AOR is the To URI's user part, looked up among ``[[user]]`` names
  whatever the host part says (phones are often set up with the proxy's IP
  address as their domain); a To without a configured user gets 404. The
  Request-URI is not checked here (step 1 is the proxy's: it answers a
  REGISTER for a foreign domain before calling the registrar). The To user
  is looked up *before* authenticating because the challenge offers that
  user's own ``digest_algorithms``; the price is that 404 vs 401 tells a
  stranger which user names exist.
- Every REGISTER must carry valid credentials of the To user (a query
  too); third-party registration is refused (403). Wrong credentials after a
  challenge get 403 Forbidden, not a new challenge.
- Expiry: the Contact ``expires`` parameter, else the Expires header, else
  ``default_expires`` (3600); a malformed value counts as 3600 (§20.19).
  Longer requests are shortened to ``max_expires`` (3600, as Kamailio's
  ``max_expires``); ``0 < expires < min_expires`` (60) is refused with 423 and
  ``Min-Expires`` (§10.3 step 7), before anything changes.
- ``Contact: *`` needs ``Expires: 0`` exactly and no other Contact (else 400).
- Ordering (§10.3 steps 6 and 7): for an existing binding with the same
  Call-ID, a CSeq not higher than the stored one aborts the whole request;
  RFC 3261 says only "the request fails" and, for failed updates, 500
  (Server Internal Error), which is what is sent. Nothing changes.
- At most ``max_bindings`` (10) current bindings per user. A REGISTER that
  alone asks for more gets 403 and changes nothing; otherwise, when new
  contacts push a user over the limit, the bindings that would expire first
  (among those not in this request) are dropped: a phone that reboots with a
  new contact every time must not lock its user out for an hour.
- Any ``Require`` option gets 420 Bad Extension (§10.3 step 2): this
  registrar supports none (no ``path``, no ``outbound``).
- A binding records the source host/port and transport the REGISTER came
  from (RFC 3581), the User-Agent, and ``registered_at`` = the time of the
  REGISTER that last created or refreshed it.
- A REGISTER whose changes the store could not write gets 500 with
  ``Retry-After: 5`` instead of its 200, and its changes are taken back
  (``store_failed``): the 200 promises that the binding survives a restart.
- The 200 OK lists every current contact with ``expires=`` (seconds left,
  rounded) and ``q=`` when not 1, highest q first, and a Date header
  (§10.3 step 8). Contacts are echoed as the phone wrote them.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from datetime import datetime, timezone

from attrs import evolve, frozen

from sipfork.bindings import Binding
from sipfork.config import Config, User
from sipfork.core.auth import Authenticator
from sipfork.core.effects import DropBinding, Log, SaveBinding, Send
from sipfork.core.ids import Ids
from sipfork.core.location import Location
from sipfork.sip.builder import build_response
from sipfork.sip.errors import LocalProtocolError, RemoteProtocolError
from sipfork.sip.headers import parse_contacts, parse_expires
from sipfork.sip.message import Request
from sipfork.sip.uri import NameAddr, SipUri

DEFAULT_EXPIRES = 3600
MIN_EXPIRES = 60
MAX_EXPIRES = 3600
MAX_BINDINGS = 10

_QVALUE_RE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")

RegistrarEffect = SaveBinding | DropBinding | Log


@frozen(kw_only=True)
class RegistrarResult:
    """The response to send, and the effects to apply before sending it."""

    response: bytes
    effects: tuple[RegistrarEffect, ...] = ()
    status: int = 200


class _Refused(Exception):
    """Ends ``handle`` early with a response; nothing has changed yet."""

    def __init__(
        self,
        status: int,
        why: str,
        *,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        level: int = logging.INFO,
    ) -> None:
        super().__init__(why)
        self.status = status
        self.why = why
        self.reason = reason
        self.headers = headers
        self.level = level


class Registrar:
    def __init__(
        self,
        config: Config,
        location: Location,
        authenticator: Authenticator,
        ids: Ids,
        *,
        default_expires: int = DEFAULT_EXPIRES,
        min_expires: int = MIN_EXPIRES,
        max_expires: int = MAX_EXPIRES,
        max_bindings: int = MAX_BINDINGS,
    ) -> None:
        self._config = config
        self._location = location
        self._authenticator = authenticator
        self._ids = ids
        self.default_expires = default_expires
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.max_bindings = max_bindings
        self._date_second: int | None = None
        self._date_text = ""

    def reload(self, config: Config) -> None:
        """Use a new configuration (the authenticator's too). Bindings of users
        that disappeared stay until they expire; nobody routes to them."""
        self._config = config
        self._authenticator.reload(config)

    def handle(
        self, request: Request, *, source: tuple[str, int], transport: str, now: float
    ) -> RegistrarResult:
        """Process a REGISTER (RFC 3261 §10.3). A malformed header is answered
        with its status code; only a request whose top Via cannot be parsed
        (so cannot be answered) raises RemoteProtocolError — the transaction
        layer has parsed it before, so that does not happen through the core."""
        if request.method != "REGISTER":
            raise LocalProtocolError(f"the registrar got a {request.method}")
        who = f"{source[0]}:{source[1]}/{transport}"
        try:
            return self._register(request, source=source, transport=transport, now=now)
        except _Refused as refusal:
            return self._respond(
                request,
                source,
                refusal.status,
                reason=refusal.reason,
                headers=refusal.headers,
                effects=(Log(level=refusal.level, message=f"REGISTER from {who}: {refusal.why}"),),
            )
        except RemoteProtocolError as error:
            return self._respond(
                request,
                source,
                error.status,
                effects=(Log(level=logging.INFO, message=f"REGISTER from {who}: {error}"),),
            )

    def store_failed(self, effects: Sequence[object]) -> dict[int, tuple[str, Send]]:
        """The store did not take the binding changes among ``effects`` (one
        write: all or none). Each change a REGISTER made is taken back, the
        last first, so the location table holds what the store has; returns
        the 500 that replaces each such REGISTER's 200 OK, by ``id`` of the
        200's Send, with the key its retransmissions come by.

        A binding that expired is gone from the table either way: its drop
        is not taken back (it carries no answer), nor is the drop retried;
        the store forgets it at the next start."""
        answers: dict[int, tuple[str, Send]] = {}
        for effect in reversed(effects):
            if isinstance(effect, SaveBinding) and effect.answer is not None:
                binding = effect.binding
                self._location.restore(binding.user, binding.contact, changed_to=binding, before=effect.previous)
            elif isinstance(effect, DropBinding) and effect.answer is not None:
                self._location.restore(effect.user, effect.contact, changed_to=None, before=effect.dropped)
            else:
                continue
            answer = effect.answer
            if id(answer.response) not in answers:
                # RFC 3261 §21.5.1: a 500 may say when to try again. As a
                # registrar in passing trouble does, ask for another try in
                # a few seconds rather than leave the phone unregistered for
                # its own retry interval.
                response = self._respond(answer.request, answer.source, 500, headers=(("Retry-After", "5"),))
                answers[id(answer.response)] = (answer.key, evolve(answer.response, data=response.response))
        return answers

    # -- the steps of §10.3 -------------------------------------------------

    def _register(
        self, request: Request, *, source: tuple[str, int], transport: str, now: float
    ) -> RegistrarResult:
        # Step 2: extensions.
        required = request.header_values("require")
        if required:
            raise _Refused(
                420,
                f"unsupported extensions {', '.join(required)}",
                headers=(("Unsupported", ", ".join(required)),),
            )
        # Step 5 (early, see the module docstring): the address-of-record.
        user = self._aor_user(request.to)
        # Steps 3 and 4: authentication and authorisation.
        self._authenticate(request, user, source_host=source[0], now=now)
        # Steps 6 and 7: the contacts.
        contacts = parse_contacts(request)
        header_expires = self._header_expires(request)
        call_id = request.call_id
        cseq = request.cseq.number
        if contacts == "*":
            changes = self._remove_all(user, header_expires, call_id, cseq, now)
        else:
            changes = self._update(
                request, user, contacts, header_expires, call_id, cseq, source, transport, now
            )
        effects = self._apply(user.name, changes)
        # Step 8: the current bindings; the log line says the same (one pass).
        headers: list[tuple[str, str]] = []
        summary: list[str] = []
        for b in self._location.contacts(user.name, now):
            remaining = _remaining(b, now)
            headers.append(("Contact", _contact_value(b, remaining)))
            summary.append(f"{b.contact} via {b.transport} {b.source_host}:{b.source_port} for {remaining}s")
        effects.append(
            Log(level=logging.INFO, message=f"REGISTER {user.name}: {', '.join(summary) or 'no contacts'}")
        )
        headers.append(("Date", self._http_date(now)))
        return self._respond(request, source, 200, headers=tuple(headers), effects=tuple(effects))

    def _http_date(self, now: float) -> str:
        """``http_date(now)``, built once per second (a Date has no fraction)."""
        second = math.floor(now)
        if second != self._date_second:
            self._date_second = second
            self._date_text = http_date(second)
        return self._date_text

    def _aor_user(self, to: NameAddr) -> User:
        uri = to.uri
        if not isinstance(uri, SipUri) or not uri.user:
            raise _Refused(404, f"To {uri} names no user")
        user = self._config.user(uri.user)
        if user is None:
            raise _Refused(404, f"To {uri}: no such user")
        return user

    def _authenticate(self, request: Request, user: User, *, source_host: str, now: float) -> None:
        result = self._authenticator.check(request, source_host=source_host, now=now, proxy=False)
        if result.status in ("missing", "stale"):
            stale = result.status == "stale"
            challenge = self._authenticator.challenge(
                realm=self._config.proxy.domain,
                source_host=source_host,
                now=now,
                proxy=False,
                user=user,
                stale=stale,
            )
            raise _Refused(
                401,
                f"challenged for {user.name}" + (" (stale nonce)" if stale else ""),
                headers=tuple(challenge),
                level=logging.DEBUG,
            )
        if result.status == "unknown-user":
            raise _Refused(403, f"credentials of an unknown user for {user.name}", level=logging.WARNING)
        if result.status != "ok" or result.user is None:
            raise _Refused(403, f"wrong credentials for {user.name}", level=logging.WARNING)
        if result.user.name != user.name:
            raise _Refused(
                403,
                f"{result.user.name} may not register {user.name}",
                level=logging.WARNING,
            )

    def _header_expires(self, request: Request) -> int | None:
        text = request.header("expires")
        if text is None:
            return None
        try:
            return parse_expires(text)
        except RemoteProtocolError:
            return self.default_expires  # §20.19: malformed means 3600

    def _remove_all(
        self, user: User, header_expires: int | None, call_id: str, cseq: int, now: float
    ) -> list[tuple[str, Binding | None]]:
        """§10.3 step 6: ``Contact: *`` with ``Expires: 0`` removes every binding."""
        if header_expires != 0:
            raise _Refused(400, "Contact: * needs Expires: 0", reason="Contact * Needs Expires 0")
        bindings = self._location.bindings(user.name)
        for binding in bindings:
            if binding.expires_at > now and binding.call_id == call_id and cseq <= binding.cseq:
                raise _Refused(500, f"out-of-order CSeq {cseq} for Call-ID {call_id}")
        return [(binding.contact, None) for binding in bindings]

    def _update(
        self,
        request: Request,
        user: User,
        contacts: list[NameAddr],
        header_expires: int | None,
        call_id: str,
        cseq: int,
        source: tuple[str, int],
        transport: str,
        now: float,
    ) -> list[tuple[str, Binding | None]]:
        """§10.3 step 7: work out every change first, then the limits; nothing
        is applied unless the whole request succeeds."""
        raw_uris = [_raw_uri(value) for value in request.header_values("contact")]
        user_agent = request.header("user-agent") or ""
        changes: dict[str, Binding | None] = {}  # contact text -> new binding, or None: drop
        too_brief: list[int] = []
        for name_addr, raw in zip(contacts, raw_uris, strict=True):
            if not isinstance(name_addr.uri, SipUri):
                raise RemoteProtocolError(f"Contact {name_addr.uri} is not a SIP URI", status=416)
            expires = self._contact_expires(name_addr, header_expires)
            if 0 < expires < min(self.min_expires, 3600):  # §10.3 step 7: only below an hour
                too_brief.append(expires)
                continue
            expires = min(expires, self.max_expires)
            q = _q_value(name_addr)
            existing = self._location.lookup(user.name, raw)
            if existing is not None and existing.expires_at > now:
                if existing.call_id == call_id and cseq <= existing.cseq:
                    raise _Refused(500, f"out-of-order CSeq {cseq} for Call-ID {call_id}")
            if existing is not None and existing.contact != raw:
                changes[existing.contact] = None  # an equivalent URI, written differently
            if expires == 0:
                if existing is not None:
                    changes[existing.contact] = None
                if existing is None or existing.contact != raw:
                    changes.pop(raw, None)  # added by an earlier duplicate of this request
                continue
            changes.pop(raw, None)  # a later duplicate in the same request wins
            if existing is not None and existing.contact == raw:
                # A refresh: the new binding shares the old one's strings
                # (memory: the location table's keys are these objects).
                raw = existing.contact
                if existing.call_id == call_id:
                    call_id = existing.call_id
            changes[raw] = Binding(
                user=user.name,
                contact=raw,
                source_host=source[0],
                source_port=source[1],
                transport=transport,
                expires_at=now + expires,
                q=q,
                call_id=call_id,
                cseq=cseq,
                user_agent=user_agent,
                registered_at=now,
            )
        if too_brief:
            raise _Refused(
                423,
                f"expires {min(too_brief)} is below {self.min_expires}",
                headers=(("Min-Expires", str(self.min_expires)),),
            )
        return self._limit(user, changes, now)

    def _limit(
        self, user: User, changes: dict[str, Binding | None], now: float
    ) -> list[tuple[str, Binding | None]]:
        """At most ``max_bindings`` current bindings: refuse a request that
        alone asks for more, else drop the ones expiring first."""
        added = [contact for contact, binding in changes.items() if binding is not None]
        if len(added) > self.max_bindings:
            raise _Refused(
                403,
                f"{len(added)} contacts for {user.name}, at most {self.max_bindings}",
                reason="Too Many Contacts",
                level=logging.WARNING,
            )
        others = [
            b
            for b in self._location.contacts(user.name, now)
            if b.contact not in changes
        ]
        excess = len(others) + len(added) - self.max_bindings
        result = list(changes.items())
        if excess > 0:
            others.sort(key=lambda b: (b.expires_at, b.registered_at))
            result.extend((b.contact, None) for b in others[:excess])
        return result

    def _contact_expires(self, name_addr: NameAddr, header_expires: int | None) -> int:
        text = name_addr.param("expires")
        if text is not None:
            try:
                return parse_expires(text)
            except RemoteProtocolError:
                return self.default_expires
        if header_expires is not None:
            return header_expires
        return self.default_expires

    # -- output -------------------------------------------------------------

    def _apply(self, user: str, changes: list[tuple[str, Binding | None]]) -> list[RegistrarEffect]:
        """Change the location table; the same changes as effects, in order."""
        effects: list[RegistrarEffect] = []
        for contact, binding in changes:
            if binding is None:
                dropped = self._location.drop(user, contact)
                effects.append(DropBinding(user=user, contact=contact, dropped=dropped))
            else:
                effects.append(SaveBinding(binding=binding, previous=self._location.put(binding)))
        return effects

    def _respond(
        self,
        request: Request,
        source: tuple[str, int],
        status: int,
        *,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        effects: tuple[RegistrarEffect, ...] = (),
    ) -> RegistrarResult:
        rport = source[1] if request.top_via.has_rport else None
        response = build_response(
            request,
            status,
            reason,
            to_tag=self._ids.tag(),
            received=source[0],
            rport=rport,
            headers=headers,
        )
        return RegistrarResult(response=response, effects=effects, status=status)


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(now: float) -> str:
    """An RFC 1123 date in GMT, as the Date header wants it (RFC 3261 §20.17)."""
    moment = datetime.fromtimestamp(now, tz=timezone.utc)
    return (
        f"{_WEEKDAYS[moment.weekday()]}, {moment.day:02d} {_MONTHS[moment.month - 1]} {moment.year}"
        f" {moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} GMT"
    )


def _remaining(binding: Binding, now: float) -> int:
    return max(0, math.floor(binding.expires_at - now + 0.5))


def _format_q(q: float) -> str:
    text = f"{q:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def _contact_value(binding: Binding, remaining: int) -> str:
    value = f"<{binding.contact}>;expires={remaining}"
    if binding.q != 1.0:
        value += f";q={_format_q(binding.q)}"
    return value


def _q_value(name_addr: NameAddr) -> float:
    """The ``q`` parameter (RFC 3261 §25.1 qvalue: 0 to 1, at most three decimals); 1 when absent."""
    text = name_addr.param("q")
    if text is None:
        return 1.0
    if _QVALUE_RE.fullmatch(text.strip()) is None:
        raise RemoteProtocolError(f"bad q value {text!r} in Contact")
    return float(text)


def _raw_uri(value: str) -> str:
    """The URI of a Contact value as written (without < >): what the binding
    keeps and the 200 OK echoes, so phones recognise their own contact."""
    text = value.strip()
    position = 0
    if text.startswith('"'):
        position = 1
        while position < len(text) and text[position] != '"':
            position += 2 if text[position] == "\\" else 1
        position += 1
    opening = text.find("<", position)
    if opening >= 0:
        closing = text.find(">", opening)
        return text[opening + 1 : closing].strip()
    return text.split(";", 1)[0].strip()
