"""Digest authentication of requests (RFC 3261 §22, RFC 7616, RFC 8760).

Pure: time comes in as ``now``; the nonce key is handed in as ``secret``.

Nonces are stateless and bound to where the challenge went::

    nonce = <issued at, ms, hex> "." <counter, hex> "." <HMAC-SHA-256(secret, issued|counter|source host|realm)[:32 hex]>

so a nonce is only good for the source address it was issued to, and only for
``nonce_lifetime`` seconds. One nonce serves every algorithm of a challenge
(one WWW-Authenticate / Proxy-Authenticate header per algorithm, in the
configured order, ``qop="auth"``).

``check`` verifies the response *before* looking at the nonce's age, so
``stale`` always means "the password was right, only the nonce was not": the
client retries with the fresh nonce without asking its user (RFC 7616 §3.3).
A nonce issued to another address, or by an earlier run of the proxy (new
secret), or whose ``nc`` was already used, is treated the same way: a
correct response gets ``stale`` (a fresh challenge; a replayed message gains
nothing from it), a wrong one ``failed``.

Replay of the same ``nc`` for the same nonce is refused from a bounded
memory: per nonce the highest ``nc`` seen and a 64-wide window below it
(requests may arrive out of order), for at most ``remembered_nonces``
nonces. When that memory overflows, nonces issued before the forgotten one
are refused as stale, so forgetting never lets a replay through.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from typing import Literal

from attrs import frozen

from sipfork.config import Config, User
from sipfork.sip.digest import Challenge, Credentials, digest_response, format_challenge, parse_credentials
from sipfork.sip.message import Request

AuthStatus = Literal["ok", "missing", "stale", "failed", "unknown-user"]

_NC_WINDOW = 64
_NC_WINDOW_MASK = (1 << _NC_WINDOW) - 1
_CLOCK_SKEW = 5.0  # seconds a nonce may seem to come from the future (clock stepped back)


@frozen(kw_only=True)
class AuthResult:
    """What ``Authenticator.check`` found.

    - ``ok``: valid credentials of ``user``;
    - ``missing``: no Digest credentials for our realm: challenge;
    - ``stale``: right password, but the nonce expired, belongs to another
      source or run, or its ``nc`` was used before: challenge with ``stale=true``;
    - ``failed``: wrong password, or an algorithm/qop we did not offer: 403;
    - ``unknown-user``: the credentials name no user of ours: 403.

    ``user`` is the user the credentials name, when known.
    """

    status: AuthStatus
    user: User | None = None


@frozen(kw_only=True)
class _NonceUse:
    issued_ms: int
    highest_nc: int
    seen: int  # bit i: highest_nc - i was used


class Authenticator:
    def __init__(
        self,
        config: Config,
        *,
        secret: bytes,
        nonce_lifetime: float = 300.0,
        remembered_nonces: int = 4096,
    ) -> None:
        self._config = config
        self._secret = secret
        self._keyed_mac = hmac.new(secret, digestmod=hashlib.sha256)
        self._nonce_lifetime = nonce_lifetime
        self._remembered_nonces = remembered_nonces
        self._counter = 0
        self._uses: OrderedDict[str, _NonceUse] = OrderedDict()  # least recently used first
        self._forgotten_before_ms = -1  # nonces issued at or before this are stale if unknown

    def reload(self, config: Config) -> None:
        """Use a new configuration; outstanding nonces stay valid."""
        self._config = config

    def algorithms(self, user: User | None) -> tuple[str, ...]:
        """The algorithms offered to ``user``: their own list, else ``[proxy]``'s."""
        if user is not None and user.digest_algorithms:
            return user.digest_algorithms
        return self._config.proxy.digest_algorithms

    def challenge(
        self,
        *,
        realm: str,
        source_host: str,
        now: float,
        proxy: bool,
        user: User | None = None,
        stale: bool = False,
    ) -> list[tuple[str, str]]:
        """The headers of a 401 (``proxy=False``: WWW-Authenticate) or 407
        (``proxy=True``: Proxy-Authenticate) challenge, one per algorithm."""
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        nonce = self._make_nonce(realm=realm, source_host=source_host, now=now)
        return [
            (
                name,
                format_challenge(
                    Challenge(
                        realm=realm,
                        nonce=nonce,
                        algorithm=algorithm,
                        qop="auth",
                        opaque=None,
                        stale=stale,
                    )
                ),
            )
            for algorithm in self.algorithms(user)
        ]

    def check(self, request: Request, *, source_host: str, now: float, proxy: bool) -> AuthResult:
        """Verify the request's Authorization (``proxy=False``) or
        Proxy-Authorization (``proxy=True``) credentials for our realm
        (``[proxy] domain``); credentials for other realms are ignored.

        Raises RemoteProtocolError(400) when Digest credentials are malformed.
        """
        realm = self._config.proxy.domain
        credentials = self._credentials(request, realm, proxy)
        if credentials is None:
            return AuthResult(status="missing")
        user = self._config.user(credentials.username)
        if user is None:
            return AuthResult(status="unknown-user")
        algorithm = self._offered_algorithm(credentials.algorithm, user)
        if (
            algorithm is None
            or credentials.qop is None
            or credentials.qop.lower() != "auth"
            or not credentials.cnonce
            or credentials.nc is None
        ):
            return AuthResult(status="failed", user=user)
        nc = _parse_nc(credentials.nc)
        if nc is None:
            return AuthResult(status="failed", user=user)
        expected = digest_response(
            algorithm=algorithm,
            username=credentials.username,
            realm=realm,
            password=user.password,
            method=request.method,
            uri=credentials.uri,
            nonce=credentials.nonce,
            cnonce=credentials.cnonce,
            nc=credentials.nc,
            qop="auth",
        )
        if not hmac.compare_digest(expected.lower().encode(), credentials.response.lower().encode()):
            return AuthResult(status="failed", user=user)
        issued_ms = self._verify_nonce(credentials.nonce, realm=realm, source_host=source_host)
        if issued_ms is None or not self._fresh(issued_ms, now):
            return AuthResult(status="stale", user=user)
        if not self._first_use(credentials.nonce, issued_ms, nc, now):
            return AuthResult(status="stale", user=user)
        return AuthResult(status="ok", user=user)

    # -- helpers ----------------------------------------------------------

    @staticmethod
    def _credentials(request: Request, realm: str, proxy: bool) -> Credentials | None:
        name = "Proxy-Authorization" if proxy else "Authorization"
        for line in request.header_lines(name):
            if line.lstrip()[:7].lower() not in ("digest ", "digest\t"):
                continue  # Basic or another scheme: not ours
            credentials = parse_credentials(line)
            if credentials.realm == realm:
                return credentials
        return None

    def _offered_algorithm(self, written: str | None, user: User) -> str | None:
        wanted = (written or "MD5").upper()  # absent means MD5 (RFC 7616 §3.3)
        for algorithm in self.algorithms(user):
            if algorithm.upper() == wanted:
                return algorithm
        return None

    def _mac(self, issued_ms: int, counter: int, *, realm: str, source_host: str) -> str:
        message = f"{issued_ms:x}|{counter:x}|{source_host.lower()}|{realm}".encode()
        mac = self._keyed_mac.copy()  # the key is already padded and hashed in
        mac.update(message)
        return mac.hexdigest()[:32]

    def _make_nonce(self, *, realm: str, source_host: str, now: float) -> str:
        issued_ms = max(0, int(now * 1000))
        self._counter = (self._counter + 1) & 0xFFFFFFFF
        counter = self._counter
        mac = self._mac(issued_ms, counter, realm=realm, source_host=source_host)
        return f"{issued_ms:x}.{counter:x}.{mac}"

    def _verify_nonce(self, nonce: str, *, realm: str, source_host: str) -> int | None:
        """The nonce's issue time (ms) if we issued it to ``source_host``, else None."""
        parts = nonce.split(".")
        if len(parts) != 3 or len(parts[0]) > 16 or len(parts[1]) > 8:
            return None
        try:
            issued_ms, counter = int(parts[0], 16), int(parts[1], 16)
        except ValueError:
            return None
        expected = self._mac(issued_ms, counter, realm=realm, source_host=source_host)
        if not hmac.compare_digest(expected.encode(), parts[2].encode()):
            return None
        return issued_ms

    def _fresh(self, issued_ms: int, now: float) -> bool:
        age = now - issued_ms / 1000
        return -_CLOCK_SKEW <= age <= self._nonce_lifetime

    def _first_use(self, nonce: str, issued_ms: int, nc: int, now: float) -> bool:
        """Record ``nc`` for ``nonce``; False when it was used before (a replay)."""
        self._forget_expired(now)
        use = self._uses.get(nonce)
        if use is None:
            if issued_ms <= self._forgotten_before_ms:
                return False  # we may have forgotten its uses
            use = _NonceUse(issued_ms=issued_ms, highest_nc=nc, seen=1)
        elif nc > use.highest_nc:
            shift = nc - use.highest_nc
            seen = ((use.seen << shift) | 1) & _NC_WINDOW_MASK if shift < _NC_WINDOW else 1
            use = _NonceUse(issued_ms=issued_ms, highest_nc=nc, seen=seen)
        else:
            offset = use.highest_nc - nc
            if offset >= _NC_WINDOW or (use.seen >> offset) & 1:
                return False
            use = _NonceUse(issued_ms=issued_ms, highest_nc=use.highest_nc, seen=use.seen | (1 << offset))
        self._uses[nonce] = use
        self._uses.move_to_end(nonce)
        while len(self._uses) > self._remembered_nonces:
            _, forgotten = self._uses.popitem(last=False)
            self._forgotten_before_ms = max(self._forgotten_before_ms, forgotten.issued_ms)
        return True

    def _forget_expired(self, now: float) -> None:
        """Drop the least recently used entries whose nonce has expired anyway."""
        while self._uses:
            nonce, use = next(iter(self._uses.items()))
            if self._fresh(use.issued_ms, now):
                return
            del self._uses[nonce]


def _parse_nc(text: str) -> int | None:
    """``nc``: exactly 8 hex digits (RFC 7616 §3.4)."""
    text = text.strip()
    if len(text) != 8:
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None
