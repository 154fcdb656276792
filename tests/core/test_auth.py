"""Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760): challenges,
checks, stale and foreign nonces, nc replay, the bounded replay memory."""

from __future__ import annotations

import pytest

from test_registrar import (
    CONFIG_TEXT,
    SECRET,
    T0,
    authorization,
    make_config,
    parse_request,
    request_bytes,
)

from sipfork.config import parse_config
from sipfork.core.auth import Authenticator
from sipfork.sip.digest import Credentials, digest_response, format_credentials, parse_challenge
from sipfork.sip.errors import RemoteProtocolError

HOME = "192.0.2.10"


@pytest.fixture
def config():
    return make_config()


@pytest.fixture
def auth(config):
    return Authenticator(config, secret=SECRET)


def challenge_values(auth, *, user=None, now=T0, source=HOME, proxy=False, stale=False):
    return auth.challenge(
        realm="pbx.local", source_host=source, now=now, proxy=proxy, user=user, stale=stale
    )


def request_with(value, *, header="Authorization", method="REGISTER"):
    return parse_request(request_bytes(method=method, headers=((header, value),)))


def answer(auth, *, algorithm="SHA-256", user="alice", password=None, now=T0, source=HOME, nc=1, **kwargs):
    """A request answering a fresh challenge issued at ``now`` to ``source``."""
    chosen = next(
        value
        for _, value in challenge_values(auth, now=now, source=source)
        if parse_challenge(value).algorithm == algorithm
    )
    return chosen, authorization(
        chosen, username=user, password=password or f"{user}-secret", nc=nc, **kwargs
    )


def test_challenge_headers(auth, config):
    headers = challenge_values(auth)
    assert [name for name, _ in headers] == ["WWW-Authenticate", "WWW-Authenticate"]
    challenges = [parse_challenge(value) for _, value in headers]
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    assert all(c.realm == "pbx.local" and c.qop == "auth" and not c.stale for c in challenges)
    proxy = challenge_values(auth, proxy=True, stale=True, user=config.user("bob"))
    assert [name for name, _ in proxy] == ["Proxy-Authenticate"]
    (only,) = [parse_challenge(value) for _, value in proxy]
    assert only.algorithm == "MD5" and only.stale


def test_each_challenge_has_its_own_nonce(auth):
    first = parse_challenge(challenge_values(auth)[0][1]).nonce
    second = parse_challenge(challenge_values(auth)[0][1]).nonce  # same second, same source
    assert first != second


def test_missing(auth):
    request = parse_request(request_bytes())
    assert auth.check(request, source_host=HOME, now=T0, proxy=False).status == "missing"
    basic = request_with("Basic YWxpY2U6c2VjcmV0")
    assert auth.check(basic, source_host=HOME, now=T0, proxy=False).status == "missing"


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_ok(auth, config, algorithm):
    _, value = answer(auth, algorithm=algorithm)
    result = auth.check(request_with(value), source_host=HOME, now=T0 + 1, proxy=False)
    assert result.status == "ok"
    assert result.user == config.user("alice")


def test_proxy_reads_proxy_authorization_only(auth):
    _, value = answer(auth, method="INVITE", uri="sip:bob@pbx.local")
    invite = request_with(value, header="Proxy-Authorization", method="INVITE")
    assert auth.check(invite, source_host=HOME, now=T0, proxy=True).status == "ok"
    assert auth.check(invite, source_host=HOME, now=T0, proxy=False).status == "missing"


def test_method_is_part_of_the_response(auth):
    _, value = answer(auth)  # computed for REGISTER
    invite = request_with(value, method="INVITE")
    assert auth.check(invite, source_host=HOME, now=T0, proxy=False).status == "failed"


def test_wrong_password(auth, config):
    _, value = answer(auth, password="guess")
    result = auth.check(request_with(value), source_host=HOME, now=T0, proxy=False)
    assert result.status == "failed"
    assert result.user == config.user("alice")


def test_unknown_user(auth):
    _, value = answer(auth, user="mallory")
    result = auth.check(request_with(value), source_host=HOME, now=T0, proxy=False)
    assert result.status == "unknown-user" and result.user is None


def test_algorithm_the_user_was_not_offered(auth):
    _, value = answer(auth, algorithm="SHA-256", user="bob")  # bob: MD5 only
    assert auth.check(request_with(value), source_host=HOME, now=T0, proxy=False).status == "failed"


def test_expired_nonce_is_stale_only_with_the_right_password(auth):
    _, value = answer(auth)
    assert auth.check(request_with(value), source_host=HOME, now=T0 + 300, proxy=False).status == "ok"
    _, value = answer(auth, nc=1)
    assert auth.check(request_with(value), source_host=HOME, now=T0 + 300.5, proxy=False).status == "stale"
    _, wrong = answer(auth, password="guess")
    assert auth.check(request_with(wrong), source_host=HOME, now=T0 + 301, proxy=False).status == "failed"


def test_nonce_lifetime_is_configurable(config):
    auth = Authenticator(config, secret=SECRET, nonce_lifetime=30)
    _, value = answer(auth)
    assert auth.check(request_with(value), source_host=HOME, now=T0 + 31, proxy=False).status == "stale"


def test_nonce_from_the_future_is_stale(auth):
    _, value = answer(auth, now=T0 + 60)  # the clock was stepped back after the challenge
    assert auth.check(request_with(value), source_host=HOME, now=T0, proxy=False).status == "stale"


def test_nonce_issued_to_another_address(auth):
    _, value = answer(auth, source="198.51.100.7")
    assert auth.check(request_with(value), source_host=HOME, now=T0, proxy=False).status == "stale"
    _, wrong = answer(auth, source="198.51.100.7", password="guess")
    assert auth.check(request_with(wrong), source_host=HOME, now=T0, proxy=False).status == "failed"


def test_nonce_of_an_earlier_run(config, auth):
    _, value = answer(Authenticator(config, secret=b"another secret"))
    assert auth.check(request_with(value), source_host=HOME, now=T0, proxy=False).status == "stale"


@pytest.mark.parametrize("nonce", ["", "abc", "1.2.3", "zz.1.00", "18bd.1." + "0" * 32])
def test_made_up_nonces_are_stale(auth, nonce):
    challenge = f'Digest realm="pbx.local", nonce="{nonce}", algorithm=MD5, qop="auth"'
    value = authorization(challenge, username="alice", password="alice-secret")
    assert auth.check(request_with(value), source_host=HOME, now=T0, proxy=False).status == "stale"


def test_nonce_count_replay(auth):
    challenge, _ = answer(auth)

    def check(nc: int) -> str:
        value = authorization(challenge, username="alice", password="alice-secret", nc=nc)
        return auth.check(request_with(value), source_host=HOME, now=T0 + 1, proxy=False).status

    assert check(1) == "ok"
    assert check(1) == "stale"  # replay
    assert check(3) == "ok"
    assert check(2) == "ok"  # out of order, inside the window
    assert check(2) == "stale"
    assert check(3) == "stale"
    assert check(100) == "ok"
    assert check(36) == "stale"  # below the 64-wide window
    assert check(37) == "ok"


def test_replay_memory_is_bounded_and_forgetting_is_safe(config):
    auth = Authenticator(config, secret=SECRET, remembered_nonces=2)
    answers = [answer(auth, now=T0 + n) for n in range(3)]

    def check(challenge: str, nc: int, now: float = T0 + 10) -> str:
        value = authorization(challenge, username="alice", password="alice-secret", nc=nc)
        return auth.check(request_with(value), source_host=HOME, now=now, proxy=False).status

    assert [check(challenge, 1) for challenge, _ in answers] == ["ok", "ok", "ok"]
    assert len(auth._uses) == 2
    # the first nonce was forgotten: it cannot be told from a replay, so it is stale
    assert check(answers[0][0], 1) == "stale"
    assert check(answers[0][0], 2) == "stale"
    # nonces issued later work as before
    assert check(answers[2][0], 2) == "ok"
    fresh, _ = answer(auth, now=T0 + 20)
    assert check(fresh, 1, now=T0 + 20) == "ok"


def test_expired_nonces_leave_the_replay_memory(auth):
    challenge, value = answer(auth)
    assert auth.check(request_with(value), source_host=HOME, now=T0, proxy=False).status == "ok"
    later, value = answer(auth, now=T0 + 400)
    assert auth.check(request_with(value), source_host=HOME, now=T0 + 400, proxy=False).status == "ok"
    assert list(auth._uses) == [parse_challenge(later).nonce]


def test_credentials_without_qop_are_refused(auth):
    challenge, _ = answer(auth, algorithm="MD5")
    nonce = parse_challenge(challenge).nonce
    response = digest_response(algorithm="MD5", username="alice", realm="pbx.local",
                               password="alice-secret", method="REGISTER", uri="sip:pbx.local", nonce=nonce)
    value = format_credentials(Credentials(username="alice", realm="pbx.local", nonce=nonce,
                                           uri="sip:pbx.local", response=response, algorithm="MD5"))
    assert auth.check(request_with(value), source_host=HOME, now=T0, proxy=False).status == "failed"


def test_other_realms_are_ignored_and_ours_is_found(auth):
    _, ours = answer(auth)
    theirs = ours.replace('realm="pbx.local"', 'realm="elsewhere"')
    request = parse_request(request_bytes(headers=(("Authorization", theirs), ("Authorization", ours))))
    assert auth.check(request, source_host=HOME, now=T0, proxy=False).status == "ok"
    only_theirs = request_with(theirs)
    assert auth.check(only_theirs, source_host=HOME, now=T0, proxy=False).status == "missing"


def test_malformed_credentials_raise_a_remote_error(auth):
    with pytest.raises(RemoteProtocolError) as error:
        auth.check(request_with('Digest username="alice"'), source_host=HOME, now=T0, proxy=False)
    assert error.value.status == 400


def test_reload_uses_the_new_passwords(auth):
    _, value = answer(auth, password="new-secret")
    assert auth.check(request_with(value), source_host=HOME, now=T0, proxy=False).status == "failed"
    auth.reload(parse_config(CONFIG_TEXT.format(proxy_extra="").replace("alice-secret", "new-secret")))
    _, value = answer(auth, password="new-secret")
    assert auth.check(request_with(value), source_host=HOME, now=T0, proxy=False).status == "ok"
