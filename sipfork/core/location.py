"""The location service (RFC 3261 §10): who is registered where, in memory.

Pure: time comes in as ``now``. The shell fills it from the store at
start-up (``Location(store.load())``); afterwards the registrar changes it
and emits the same changes as effects, which the shell writes to the store.
The routing planner reads ``snapshot(now)``; the proxy finds where to send
an in-dialog request with ``find_contact``.

A registrar holds one entry per registered phone, so the table is built
for memory: two dicts (user -> bindings, and a loose URI key -> bindings
for ``find_contact``) whose values are the binding itself when there is one
(the usual case) and a tuple when there are several. Most phones register a
contact whose user part is their user name (``sip:alice@192.0.2.7:5060``
for alice): ``find_contact`` finds those through the first dict, by the
user part of the URI it is asked for, and only the other contacts are in
the second, so the usual binding costs one dict entry, not two. The loose
key of the usual contact ``sip:user@host:port`` is the contact text itself,
so it costs no string of its own; the expiry heap holds the bindings
themselves.

A binding is current while ``now < expires_at``. Expired bindings stay in the
table (invisible to ``contacts`` / ``snapshot``) until ``expire(now)``
removes them and returns the ``DropBinding`` effects for the store; the core
calls it when ``next_expiry()`` passes.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping

from sipfork.bindings import Binding
from sipfork.core.effects import DropBinding
from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.uri import SipUri, TelUri, parse_uri

# URI parameters that must match when either URI has them (RFC 3261 §19.1.4).
_ALWAYS_COMPARED_PARAMS = ("user", "ttl", "method", "maddr", "transport")

# A user's bindings, or the bindings under one loose key: one, or several.
_Entry = Binding | tuple[Binding, ...]


def _parse(uri: str) -> SipUri | TelUri | None:
    text = uri.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    try:
        return parse_uri(text)
    except RemoteProtocolError:
        return None


def _params(uri: SipUri | TelUri) -> dict[str, str | None]:
    return {
        name.lower(): (value.lower() if value is not None else None) for name, value in uri.params
    }


def uris_equivalent(first: SipUri | TelUri, second: SipUri | TelUri) -> bool:
    """URI comparison (RFC 3261 §19.1.4).

    Scheme, user and password exactly (after unescaping); host
    case-insensitively; the port as written (``sip:a@h`` is not
    ``sip:a@h:5060``); ``user``, ``ttl``, ``method``, ``maddr`` and
    ``transport`` parameters must match when either URI has them; any other
    parameter only when both have it; headers must all match. tel URIs
    (RFC 3966 §4) compare by number and parameters.
    """
    if isinstance(first, TelUri) or isinstance(second, TelUri):
        if not (isinstance(first, TelUri) and isinstance(second, TelUri)):
            return False
        return first.number == second.number and _params(first) == _params(second)
    if (
        first.scheme != second.scheme
        or first.user != second.user
        or first.password != second.password
        or first.host.lower() != second.host.lower()
        or first.port != second.port
    ):
        return False
    first_params, second_params = _params(first), _params(second)
    for name in _ALWAYS_COMPARED_PARAMS:
        if first_params.get(name, "\0absent") != second_params.get(name, "\0absent"):
            return False
    for name in first_params.keys() & second_params.keys():
        if first_params[name] != second_params[name]:
            return False
    first_headers = {(name.lower(), value) for name, value in first.headers}
    second_headers = {(name.lower(), value) for name, value in second.headers}
    return first_headers == second_headers


def _loose_key(uri: SipUri | TelUri) -> str:
    """What two equivalent URIs always share, as text (an index key, not a
    comparison: scheme, user, host in lower case, port). For the usual
    contact ``sip:user@host:port`` it is the contact's own text."""
    if isinstance(uri, TelUri):
        return "tel:" + uri.number
    host = uri.host.lower()
    if ":" in host:
        host = f"[{host}]"
    text = f"{uri.scheme}:{uri.user}@{host}" if uri.user is not None else f"{uri.scheme}:{host}"
    return text if uri.port is None else f"{text}:{uri.port}"


def _key_of(user: str, contact: str) -> str | None:
    """The ``_by_key`` key of ``user``'s binding for ``contact``: None when
    the contact's user part is ``user`` (``find_contact`` finds it through
    the user), else its loose key, or its own text when it does not parse
    (then only the same text finds it)."""
    parsed = _parse(contact)
    if parsed is None:
        return contact
    if isinstance(parsed, SipUri) and parsed.user == user:
        return None
    key = _loose_key(parsed)
    return contact if key == contact else key


def _as_tuple(entry: _Entry) -> tuple[Binding, ...]:
    return entry if type(entry) is tuple else (entry,)  # type: ignore[return-value]


def _holds(entry: _Entry | None, binding: Binding) -> bool:
    """``binding`` itself (not an equal value) is in ``entry``."""
    if entry is binding:
        return True
    return type(entry) is tuple and any(b is binding for b in entry)  # type: ignore[union-attr]


def _put_into(table: dict[str, _Entry], key: str, binding: Binding) -> Binding | None:
    """Add ``binding`` under ``key``, in place of the one with the same user
    and contact (which keeps its position); the one replaced, or None."""
    entry = table.get(key)
    if entry is None:
        table[key] = binding
        return None
    bindings = _as_tuple(entry)
    for index, old in enumerate(bindings):
        if old.contact == binding.contact and old.user == binding.user:
            if len(bindings) == 1:
                # Re-insert: the dict keeps its first key object, which may be
                # the replaced binding's contact text (kept alive for nothing).
                del table[key]
                table[binding.contact if key == binding.contact else key] = binding
            else:
                table[key] = bindings[:index] + (binding,) + bindings[index + 1 :]
            return old
    table[key] = bindings + (binding,)
    return None


def _remove_from(table: dict[str, _Entry], key: str, user: str, contact: str) -> Binding | None:
    """Remove the binding of ``user`` for ``contact`` under ``key``; the one removed, or None."""
    entry = table.get(key)
    if entry is None:
        return None
    bindings = _as_tuple(entry)
    for index, old in enumerate(bindings):
        if old.contact == contact and old.user == user:
            rest = bindings[:index] + bindings[index + 1 :]
            if not rest:
                del table[key]
            else:
                table[key] = rest[0] if len(rest) == 1 else rest
            return old
    return None


def _registered_at(binding: Binding) -> float:
    return binding.registered_at


def _minus_q(binding: Binding) -> float:
    return -binding.q


class Location:
    """The bindings of every user, keyed by ``(user, contact)``.

    ``contact`` is the URI text as the phone wrote it; the same contact may be
    registered by two users (one phone, two accounts): two bindings.
    """

    def __init__(self, bindings: Iterable[Binding] = ()) -> None:
        self._by_user: dict[str, _Entry] = {}  # in registration order
        self._by_key: dict[str, _Entry] = {}  # loose URI key -> bindings of any user
        self._expiries: list[Binding] = []  # heap by expires_at; replaced ones skipped lazily
        self._count = 0
        self._snapshot: _Current | None = None
        self._snapshot_at = 0.0
        self._snapshot_until = 0.0
        for binding in bindings:
            self.put(binding)

    # -- reading ----------------------------------------------------------

    def contacts(self, user: str, now: float) -> list[Binding]:
        """The user's current bindings, highest q first (equal q: oldest binding first)."""
        entry = self._by_user.get(user)
        if entry is None:
            return []
        if type(entry) is not tuple:
            return [entry] if entry.expires_at > now else []  # type: ignore[union-attr, list-item]
        current = [b for b in entry if b.expires_at > now]  # type: ignore[union-attr]
        current.sort(key=_minus_q)
        return current

    def snapshot(self, now: float) -> Mapping[str, tuple[Binding, ...]]:
        """Read-only ``user -> current bindings`` (highest q first) for the planner.

        A view of the table as of ``now``, not a copy (a copy of every user's
        bindings on each call would cost time and memory in proportion to
        the table): read it before the table changes. The same view is
        returned until the table changes or a binding in it expires.
        """
        if (
            self._snapshot is not None
            and self._snapshot_at <= now < self._snapshot_until
        ):
            return self._snapshot
        earliest = self.next_expiry()
        self._snapshot = _Current(self, now)
        self._snapshot_at = now
        self._snapshot_until = float("inf") if earliest is None else earliest
        return self._snapshot

    def bindings(self, user: str) -> list[Binding]:
        """Every binding of ``user``, expired ones not yet removed included."""
        entry = self._by_user.get(user)
        return [] if entry is None else list(_as_tuple(entry))

    def lookup(self, user: str, contact: str) -> Binding | None:
        """The user's binding for ``contact``: the same text, else an
        equivalent URI (RFC 3261 §10.3 step 7 compares with §19.1.4)."""
        entry = self._by_user.get(user)
        if entry is None:
            return None
        bindings = _as_tuple(entry)
        for binding in bindings:
            if binding.contact == contact:
                return binding
        wanted = _parse(contact)
        if wanted is None:
            return None
        key = _loose_key(wanted)
        for binding in bindings:
            candidate = _parse(binding.contact)
            if candidate is not None and _loose_key(candidate) == key and uris_equivalent(wanted, candidate):
                return binding
        return None

    def find_contact(self, uri: str) -> Binding | None:
        """The binding whose contact is ``uri``: the same text first, else an
        equivalent URI (RFC 3261 §19.1.4). With several (one phone registered
        for two users), the latest registration wins. Expired bindings not
        yet removed by ``expire`` are found too."""
        wanted = _parse(uri)
        if wanted is None:
            entry = self._by_key.get(uri)  # a contact that does not parse is its own key
            exact = [b for b in _as_tuple(entry) if b.contact == uri] if entry is not None else []
            return max(exact, key=_registered_at) if exact else None
        # Who may hold it: the bindings under its loose key, and those of the
        # user named by its user part (equivalent URIs have the same user).
        key = _loose_key(wanted)
        entry = self._by_key.get(key)
        own = self._by_user.get(wanted.user) if isinstance(wanted, SipUri) and wanted.user is not None else None
        if own is None:
            if entry is None:
                return None
            candidates = _as_tuple(entry)
        elif entry is None:
            candidates = _as_tuple(own)
        else:
            candidates = _as_tuple(entry) + _as_tuple(own)
        matches = [b for b in candidates if b.contact == uri]
        if not matches:
            for binding in candidates:
                candidate = _parse(binding.contact)
                if candidate is not None and uris_equivalent(wanted, candidate):
                    matches.append(binding)
        if not matches:
            return None
        return matches[0] if len(matches) == 1 else max(matches, key=_registered_at)

    def next_expiry(self) -> float | None:
        """When the earliest binding expires (``expire`` has work), or None."""
        self._discard_stale_expiries()
        return self._expiries[0].expires_at if self._expiries else None

    def all(self) -> list[Binding]:
        """Every binding, expired ones not yet removed included."""
        return [b for entry in self._by_user.values() for b in _as_tuple(entry)]

    def __len__(self) -> int:
        return self._count

    # -- changing ---------------------------------------------------------

    def put(self, binding: Binding) -> Binding | None:
        """Add or replace the binding keyed by ``(binding.user, binding.contact)``;
        the one replaced, or None."""
        old = _put_into(self._by_user, binding.user, binding)
        if old is None:
            self._count += 1
        key = _key_of(binding.user, binding.contact)  # the replaced one's too: same user and contact
        if key is not None:
            _put_into(self._by_key, key, binding)
        heapq.heappush(self._expiries, binding)
        if len(self._expiries) > self._count + (self._count >> 2) + 64:
            self._rebuild_expiries()
        self._snapshot = None
        return old

    def drop(self, user: str, contact: str) -> Binding | None:
        """Remove a binding (exact contact text); absent is not an error. The
        one removed, or None."""
        old = _remove_from(self._by_user, user, user, contact)
        if old is None:
            return None
        key = self._key(old)
        if key is not None:
            _remove_from(self._by_key, key, user, contact)
        self._count -= 1
        self._snapshot = None
        return old

    def restore(self, user: str, contact: str, *, changed_to: Binding | None, before: Binding | None) -> None:
        """Take back a change of ``(user, contact)`` from ``before`` to
        ``changed_to`` (None: no binding) that the store did not take.

        Only while the contact still holds ``changed_to`` itself: a change
        made since (another worker's, read from the store) is what the store
        has, and stays."""
        entry = self._by_user.get(user)
        current = next((b for b in _as_tuple(entry) if b.contact == contact), None) if entry is not None else None
        if current is not changed_to:
            return
        if before is not None:
            self.put(before)
        elif current is not None:
            self.drop(user, contact)

    def expire(self, now: float) -> list[DropBinding]:
        """Remove every binding with ``expires_at <= now``; the store effects, earliest first."""
        dropped: list[DropBinding] = []
        expiries = self._expiries
        while expiries and expiries[0].expires_at <= now:
            binding = heapq.heappop(expiries)
            if not _holds(self._by_user.get(binding.user), binding):
                continue  # replaced or dropped since it was pushed
            self.drop(binding.user, binding.contact)
            dropped.append(DropBinding(user=binding.user, contact=binding.contact))
        return dropped

    # -- helpers ----------------------------------------------------------

    def _key(self, binding: Binding) -> str | None:
        """The ``_by_key`` key ``binding`` is stored under, or None (without
        parsing its contact again when it is its own key)."""
        if _holds(self._by_key.get(binding.contact), binding):
            return binding.contact
        return _key_of(binding.user, binding.contact)

    def _discard_stale_expiries(self) -> None:
        expiries = self._expiries
        by_user = self._by_user
        while expiries:
            binding = expiries[0]
            if _holds(by_user.get(binding.user), binding):
                return
            heapq.heappop(expiries)

    def _rebuild_expiries(self) -> None:
        self._expiries = self.all()
        heapq.heapify(self._expiries)


class _Current(Mapping[str, tuple[Binding, ...]]):
    """``user -> current bindings`` (highest q first) as of ``now``, read
    from the location table when asked (``Location.snapshot``)."""

    __slots__ = ("_location", "_now")

    def __init__(self, location: Location, now: float) -> None:
        self._location = location
        self._now = now

    def __getitem__(self, user: str) -> tuple[Binding, ...]:
        current = self._location.contacts(user, self._now)
        if not current:
            raise KeyError(user)
        return tuple(current)

    def get(self, user: str, default: object = None) -> tuple[Binding, ...] | object:  # type: ignore[override]
        current = self._location.contacts(user, self._now)
        return tuple(current) if current else default

    def __contains__(self, user: object) -> bool:
        return isinstance(user, str) and bool(self._location.contacts(user, self._now))

    def __iter__(self) -> Iterator[str]:
        location, now = self._location, self._now
        return iter([user for user in location._by_user if location.contacts(user, now)])

    def __len__(self) -> int:
        return sum(1 for _ in self)
