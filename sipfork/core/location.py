"""The location service (RFC 3261 §10): who is registered where, in memory.

Pure: time comes in as ``now``. The shell fills it from the store at
start-up (``Location(store.load())``); afterwards the registrar changes it
and emits the same changes as effects, which the shell writes to the store.
The routing planner reads ``snapshot(now)``; the proxy finds where to send
an in-dialog request with ``find_contact``.

A binding is current while ``now < expires_at``. Expired bindings stay in the
table (invisible to ``contacts`` / ``snapshot``) until ``expire(now)``
removes them and returns the ``DropBinding`` effects for the store; the core
calls it when ``next_expiry()`` passes.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from sipfork.bindings import Binding
from sipfork.core.effects import DropBinding
from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.uri import SipUri, TelUri, parse_uri

# URI parameters that must match when either URI has them (RFC 3261 §19.1.4).
_ALWAYS_COMPARED_PARAMS = ("user", "ttl", "method", "maddr", "transport")

_LooseKey = tuple[str, str | None, str, int | None]


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


def _loose_key(uri: SipUri | TelUri) -> _LooseKey:
    """What two equivalent URIs always share (an index key, not a comparison)."""
    if isinstance(uri, TelUri):
        return ("tel", uri.number, "", None)
    return (uri.scheme, uri.user, uri.host.lower(), uri.port)


class Location:
    """The bindings of every user, keyed by ``(user, contact)``.

    ``contact`` is the URI text as the phone wrote it; the same contact may be
    registered by two users (one phone, two accounts): two bindings.
    """

    def __init__(self, bindings: Iterable[Binding] = ()) -> None:
        self._by_user: dict[str, dict[str, Binding]] = {}
        self._by_contact: dict[str, dict[str, Binding]] = {}  # contact -> user -> binding
        self._by_loose_key: dict[_LooseKey, set[tuple[str, str]]] = {}
        self._expiries: list[tuple[float, str, str]] = []  # heap; stale entries skipped lazily
        self._count = 0
        self._snapshot: Mapping[str, tuple[Binding, ...]] | None = None
        self._snapshot_at = 0.0
        self._snapshot_until = 0.0
        for binding in bindings:
            self.put(binding)

    # -- reading ----------------------------------------------------------

    def contacts(self, user: str, now: float) -> list[Binding]:
        """The user's current bindings, highest q first (equal q: oldest binding first)."""
        current = [b for b in self._by_user.get(user, {}).values() if b.expires_at > now]
        current.sort(key=lambda b: -b.q)
        return current

    def snapshot(self, now: float) -> Mapping[str, tuple[Binding, ...]]:
        """Read-only ``user -> current bindings`` (highest q first) for the planner.

        Cached until the table changes or the earliest binding in it expires.
        """
        if (
            self._snapshot is not None
            and self._snapshot_at <= now < self._snapshot_until
        ):
            return self._snapshot
        table: dict[str, tuple[Binding, ...]] = {}
        until = float("inf")
        for user in self._by_user:
            current = self.contacts(user, now)
            if current:
                table[user] = tuple(current)
                until = min(until, min(b.expires_at for b in current))
        self._snapshot = MappingProxyType(table)
        self._snapshot_at = now
        self._snapshot_until = until
        return self._snapshot

    def bindings(self, user: str) -> list[Binding]:
        """Every binding of ``user``, expired ones not yet removed included."""
        return list(self._by_user.get(user, {}).values())

    def lookup(self, user: str, contact: str) -> Binding | None:
        """The user's binding for ``contact``: the same text, else an
        equivalent URI (RFC 3261 §10.3 step 7 compares with §19.1.4)."""
        bindings = self._by_user.get(user)
        if not bindings:
            return None
        found = bindings.get(contact)
        if found is not None:
            return found
        wanted = _parse(contact)
        if wanted is None:
            return None
        key = _loose_key(wanted)
        for candidate_user, candidate_contact in self._by_loose_key.get(key, ()):
            if candidate_user != user:
                continue
            candidate = _parse(candidate_contact)
            if candidate is not None and uris_equivalent(wanted, candidate):
                return bindings[candidate_contact]
        return None

    def find_contact(self, uri: str) -> Binding | None:
        """The binding whose contact is ``uri``: the same text first, else an
        equivalent URI (RFC 3261 §19.1.4). With several (one phone registered
        for two users), the latest registration wins. Expired bindings not
        yet removed by ``expire`` are found too."""
        exact = self._by_contact.get(uri)
        if exact:
            return max(exact.values(), key=lambda b: b.registered_at)
        wanted = _parse(uri)
        if wanted is None:
            return None
        matches = []
        for user, contact in self._by_loose_key.get(_loose_key(wanted), ()):
            candidate = _parse(contact)
            if candidate is not None and uris_equivalent(wanted, candidate):
                matches.append(self._by_user[user][contact])
        if not matches:
            return None
        return max(matches, key=lambda b: b.registered_at)

    def next_expiry(self) -> float | None:
        """When the earliest binding expires (``expire`` has work), or None."""
        self._discard_stale_expiries()
        return self._expiries[0][0] if self._expiries else None

    def all(self) -> list[Binding]:
        """Every binding, expired ones not yet removed included."""
        return [b for bindings in self._by_user.values() for b in bindings.values()]

    def __len__(self) -> int:
        return self._count

    # -- changing ---------------------------------------------------------

    def put(self, binding: Binding) -> None:
        """Add or replace the binding keyed by ``(binding.user, binding.contact)``."""
        user, contact = binding.user, binding.contact
        bindings = self._by_user.setdefault(user, {})
        if contact not in bindings:
            self._count += 1
            parsed = _parse(contact)
            if parsed is not None:
                self._by_loose_key.setdefault(_loose_key(parsed), set()).add((user, contact))
        bindings[contact] = binding
        self._by_contact.setdefault(contact, {})[user] = binding
        heapq.heappush(self._expiries, (binding.expires_at, user, contact))
        if len(self._expiries) > 2 * self._count + 64:
            self._rebuild_expiries()
        self._snapshot = None

    def drop(self, user: str, contact: str) -> None:
        """Remove a binding (exact contact text); absent is not an error."""
        bindings = self._by_user.get(user)
        if bindings is None or contact not in bindings:
            return
        del bindings[contact]
        if not bindings:
            del self._by_user[user]
        users = self._by_contact[contact]
        del users[user]
        if not users:
            del self._by_contact[contact]
        parsed = _parse(contact)
        if parsed is not None:
            key = _loose_key(parsed)
            keyed = self._by_loose_key.get(key)
            if keyed is not None:
                keyed.discard((user, contact))
                if not keyed:
                    del self._by_loose_key[key]
        self._count -= 1
        self._snapshot = None

    def expire(self, now: float) -> list[DropBinding]:
        """Remove every binding with ``expires_at <= now``; the store effects, earliest first."""
        dropped: list[DropBinding] = []
        while self._expiries and self._expiries[0][0] <= now:
            expires_at, user, contact = heapq.heappop(self._expiries)
            binding = self._by_user.get(user, {}).get(contact)
            if binding is None or binding.expires_at != expires_at:
                continue  # replaced or dropped since this entry was pushed
            self.drop(user, contact)
            dropped.append(DropBinding(user=user, contact=contact))
        return dropped

    # -- helpers ----------------------------------------------------------

    def _discard_stale_expiries(self) -> None:
        while self._expiries:
            expires_at, user, contact = self._expiries[0]
            binding = self._by_user.get(user, {}).get(contact)
            if binding is not None and binding.expires_at == expires_at:
                return
            heapq.heappop(self._expiries)

    def _rebuild_expiries(self) -> None:
        self._expiries = [(b.expires_at, b.user, b.contact) for b in self.all()]
        heapq.heapify(self._expiries)
