"""The phone harness itself: real pjsua2 phones calling each other directly (no proxy).

Also the proxy fixture's plumbing, against a stand-in process that only
answers OPTIONS (the real proxy is exercised by the other e2e tests).
"""

from __future__ import annotations

import hashlib
import re
import socket
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .phones import (
    Phone,
    PhoneCommandError,
    PhoneDied,
    PhoneTimeout,
    RunningProxy,
    pjsua2_has_ipv6,
    prepare_config,
    render_config,
)

PhoneFactory = Callable[..., Phone]


def _ring(caller: Phone, callee: Phone) -> tuple[int, int]:
    """caller calls callee directly; returns (caller's handle, callee's handle) once it rings."""
    outgoing = caller.call(callee.uri)
    incoming = callee.wait_for("incoming_call").call
    assert caller.wait_for("call_state", call=outgoing, state="EARLY").status == 180
    return outgoing, incoming


def test_call_rings_is_answered_and_hung_up(phone_factory: PhoneFactory) -> None:
    alice, bob = phone_factory("alice"), phone_factory("bob")

    outgoing = alice.call(bob.uri)
    incoming = bob.wait_for("incoming_call")
    assert incoming.from_user == "alice"
    assert incoming.to_user == "bob"
    assert incoming.request_uri.startswith(f"sip:bob@127.0.0.1:{bob.port}")
    assert incoming.headers["Call-ID"] == incoming.sip_call_id
    early = alice.wait_for("call_state", call=outgoing, state="EARLY")
    assert (early.status, early.role) == (180, "caller")
    assert alice.wait_for("sip_rx", status=180, cseq_method="INVITE").call == outgoing

    bob.answer(incoming.call)
    assert alice.wait_for("call_state", call=outgoing, state="CONFIRMED").status == 200
    assert bob.wait_for("call_state", call=incoming.call, state="CONFIRMED").role == "callee"

    alice.hangup(outgoing)
    bye = bob.wait_for("sip_rx", method="BYE")
    assert bye.call == incoming.call
    assert bye.headers["CSeq"].endswith("BYE")
    assert bob.wait_for("call_state", call=incoming.call, state="DISCONNECTED").reason
    assert alice.wait_for("call_state", call=outgoing, state="DISCONNECTED")


def test_reject_gives_the_caller_486(phone_factory: PhoneFactory) -> None:
    alice, bob = phone_factory("alice"), phone_factory("bob")
    outgoing, incoming = _ring(alice, bob)

    bob.reject(incoming, 486)

    assert alice.wait_for("call_state", call=outgoing, state="DISCONNECTED").status == 486
    assert bob.wait_for("sip_tx", status=486).cseq_method == "INVITE"
    assert alice.wait_for("sip_rx", status=486).reason == "Busy Here"


def test_cancel_before_answer_reaches_the_callee(phone_factory: PhoneFactory) -> None:
    alice, bob = phone_factory("alice"), phone_factory("bob")
    outgoing, incoming = _ring(alice, bob)

    alice.hangup(outgoing)

    cancel = bob.wait_for("sip_rx", method="CANCEL")
    assert cancel.call == incoming
    assert cancel.headers["CSeq"].endswith("CANCEL")
    assert cancel.text.startswith("CANCEL sip:bob@")
    assert bob.wait_for("call_state", call=incoming, state="DISCONNECTED").status == 487
    assert alice.wait_for("call_state", call=outgoing, state="DISCONNECTED").status == 487


def test_auto_answer_and_auto_reject(phone_factory: PhoneFactory) -> None:
    alice = phone_factory("alice")
    answering = phone_factory("bob", auto_answer_after=0.1)
    declining = phone_factory("carol", auto_reject=603)

    answered = alice.call(answering.uri)
    assert alice.wait_for("call_state", call=answered, state="EARLY").status == 180
    assert alice.wait_for("call_state", call=answered, state="CONFIRMED").status == 200
    assert answering.wait_for("auto_action", action="answer").error is None

    declined = alice.call(declining.uri)
    assert alice.wait_for("call_state", call=declined, state="DISCONNECTED").status == 603
    assert not alice.events("call_state", call=declined, state="EARLY")

    declining.configure(auto_reject=None, auto_answer_after=0)
    again = alice.call(declining.uri)
    assert alice.wait_for("call_state", call=again, state="CONFIRMED")


def test_consecutive_calls_get_their_own_handles_and_events(phone_factory: PhoneFactory) -> None:
    alice = phone_factory("alice")
    bob = phone_factory("bob", auto_answer_after=0)
    handles = []
    for _ in range(3):
        call = alice.call(bob.uri)
        alice.wait_for("call_state", call=call, state="CONFIRMED")
        bob.wait_for("call_state", state="CONFIRMED")  # each wait hands out the next event
        alice.hangup()
        alice.wait_for("call_state", call=call, state="DISCONNECTED")
        bob.wait_for("call_state", state="DISCONNECTED")
        handles.append(call)
    assert len(set(handles)) == 3
    assert len(bob.events("incoming_call")) == 3
    assert set(bob.calls().values()) == {"DISCONNECTED"}


def test_tcp_phones(phone_factory: PhoneFactory) -> None:
    alice = phone_factory("alice", transport="tcp")
    bob = phone_factory("bob", transport="tcp", auto_answer_after=0)
    assert bob.uri.endswith(";transport=tcp")

    call = alice.call(bob.uri)
    assert alice.wait_for("call_state", call=call, state="CONFIRMED")
    assert bob.wait_for("sip_rx", method="INVITE").transport == "TCP"
    alice.hangup(call)
    assert bob.wait_for("call_state", state="DISCONNECTED")


def test_an_ipv6_phone_fails_clearly_with_this_pjsua2_build(phone_factory: PhoneFactory) -> None:
    # The PyPI wheel is built without PJ_HAS_IPV6: IPv6 devices are played
    # by SIPp instead (tests/e2e/test_ipv6.py). A wheel with IPv6 makes this
    # test fail, which is the cue to move the IPv6 test to pjsua2.
    assert not pjsua2_has_ipv6()
    with pytest.raises(PhoneDied, match="no IPv6 support"):
        phone_factory("alice", ipv6=True)


def test_a_wait_that_times_out_says_what_was_missing(phone_factory: PhoneFactory) -> None:
    alice, bob = phone_factory("alice"), phone_factory("bob")
    _ring(alice, bob)

    with pytest.raises(PhoneTimeout) as raised:
        alice.wait_for("call_state", timeout=0.2, state="CONFIRMED")
    message = str(raised.value)
    assert "alice: no call_state(state='CONFIRMED') event within 0.2s" in message
    assert "state='EARLY'" in message  # what it saw instead
    assert isinstance(raised.value, AssertionError)

    with pytest.raises(PhoneCommandError, match="has no call 99"):
        bob.answer(99)
    alice.assert_no_event("incoming_call", within=0.05)


def test_a_killed_phone_fails_waits_at_once(phone_factory: PhoneFactory) -> None:
    alice = phone_factory("alice")
    alice.kill()
    started = time.monotonic()
    with pytest.raises(PhoneDied):
        alice.wait_for("incoming_call", timeout=5)
    with pytest.raises(PhoneDied):
        alice.call("sip:nobody@127.0.0.1:9")
    assert time.monotonic() - started < 2


# --------------------------------------------------------------------------
# register() against a minimal digest registrar
# --------------------------------------------------------------------------


class FakeRegistrar:
    """A UDP registrar for one user: 401 with an MD5 challenge, then 200 or 403."""

    realm = "pbx.local"
    nonce = "d2ee6f1e9c0b"

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                data, source = self.sock.recvfrom(65535)
            except OSError:
                return
            text = data.decode()
            self.requests.append(text)
            if text.startswith("REGISTER "):
                try:
                    self.sock.sendto(self._answer(text).encode(), source)
                except OSError:
                    return  # closed at the end of the test

    def _answer(self, request: str) -> str:
        headers = [line for line in request.split("\r\n\r\n", 1)[0].split("\r\n")[1:]]

        def first(name: str) -> str:
            return next((h.split(":", 1)[1].strip() for h in headers if h.split(":", 1)[0].strip().lower() == name.lower()), "")

        copied = [h for h in headers if h.split(":", 1)[0].strip().lower() in ("via", "from", "call-id", "cseq")]
        copied.append(f"To: {first('To')};tag=fake")
        authorization = first("Authorization")
        if not authorization:
            status = "401 Unauthorized"
            copied.append(f'WWW-Authenticate: Digest realm="{self.realm}", nonce="{self.nonce}", algorithm=MD5, qop="auth"')
        elif self._valid(authorization, request.split(" ", 2)[1]):
            status = "200 OK"
            expires = "0" if re.search(r"expires=0|Expires: 0", request) else "300"
            copied.append(f"Contact: {first('Contact')};expires={expires}")
        else:
            status = "403 Forbidden"
        return f"SIP/2.0 {status}\r\n" + "\r\n".join(copied) + "\r\nContent-Length: 0\r\n\r\n"

    def _valid(self, authorization: str, request_uri: str) -> bool:
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', authorization))

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"{self.user}:{self.realm}:{self.password}")
        ha2 = md5(f"REGISTER:{params.get('uri', request_uri)}")
        expected = md5(f"{ha1}:{self.nonce}:{params.get('nc')}:{params.get('cnonce')}:auth:{ha2}")
        return params.get("username") == self.user and params.get("response") == expected


@pytest.fixture
def registrar() -> Iterator[FakeRegistrar]:
    fake = FakeRegistrar("alice", "alice-secret")
    yield fake
    fake.close()


def test_register_and_unregister(registrar: FakeRegistrar, phone_factory: PhoneFactory) -> None:
    phone = phone_factory("alice1")

    assert phone.register("127.0.0.1", registrar.port, "alice", "alice-secret") == 200
    registered = phone.events("reg_state")[-1]
    assert registered.registered and registered.expiration == 300
    sent = [ev for ev in phone.events("sip_tx", method="REGISTER")]
    assert "Authorization" not in sent[0].headers
    assert 'username="alice"' in sent[1].headers["Authorization"]
    assert sent[1].headers["To"] == "<sip:alice@pbx.local>"
    assert sent[1].request_uri == f"sip:127.0.0.1:{registrar.port}"

    assert phone.unregister() == 200
    assert not phone.events("reg_state")[-1].registered


def test_register_with_a_wrong_password_gives_403(registrar: FakeRegistrar, phone_factory: PhoneFactory) -> None:
    # (registrar first: it must outlive the phones, which unregister when closed)
    phone = phone_factory("alice1")
    assert phone.register("127.0.0.1", registrar.port, "alice", "wrong") == 403
    assert phone.register("127.0.0.1", registrar.port, "alice", "alice-secret") == 200


# --------------------------------------------------------------------------
# proxy configuration and the proxy fixture's plumbing
# --------------------------------------------------------------------------


def test_render_config_is_valid_toml() -> None:
    text = render_config(
        listen=["udp:127.0.0.1:5999"],
        data_dir="/tmp/x",
        users={"alice": "a-pw", "bob": {"password": "b-pw", "extension": "12", "digest_algorithms": ["MD5"]}},
        groups=[{"name": "office", "members": ["alice", "bob"]}],
        numbers=[
            {
                "number": "+4922166966966",
                "otherwise": "unavailable",
                "forwarding": [
                    {"type": "always", "ringing": "parallel", "duration": 20, "targets": ["alice", {"target": "bob", "delay": 5}]},
                ],
            }
        ],
    )
    data = tomllib.loads(text)
    assert data["proxy"] == {"domain": "pbx.local", "listen": ["udp:127.0.0.1:5999"], "data_dir": "/tmp/x"}
    assert data["user"][1] == {"name": "bob", "password": "b-pw", "extension": "12", "digest_algorithms": ["MD5"]}
    assert data["number"][0]["forwarding"][0]["targets"][1] == {"target": "bob", "delay": 5}
    assert [u["name"] for u in tomllib.loads(render_config())["user"]] == ["alice", "bob", "carol", "dave"]


def test_prepare_config_fills_in_listen_and_data_dir(tmp_path: Path) -> None:
    path, facts = prepare_config('[proxy]\ndomain = "pbx.local"\n\n[[user]]\nname = "eve"\npassword = "eve-pw"\n', tmp_path)
    data = tomllib.loads(path.read_text())
    assert data["proxy"]["listen"] == [f"udp:127.0.0.1:{facts['port']}", f"tcp:127.0.0.1:{facts['port']}"]
    assert data["proxy"]["data_dir"] == str(tmp_path / "var")
    assert facts["users"] == {"eve": "eve-pw"}

    path, facts = prepare_config({"users": {"zed": "z"}, "proxy": {"ring_time": 5}}, tmp_path / "two")
    data = tomllib.loads(path.read_text())
    assert data["proxy"]["ring_time"] == 5 and facts["users"] == {"zed": "z"}


STAND_IN_PROXY = r"""
import socket, sys, threading, tomllib
config = tomllib.load(open(sys.argv[1], "rb"))
_, host, port = config["proxy"]["listen"][0].split(":")
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind((host, int(port)))
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); tcp.bind((host, int(port))); tcp.listen()
threading.Thread(target=lambda: [tcp.accept()[0].close() for _ in iter(int, 1)], daemon=True).start()
print("stand-in listening on", port, file=sys.stderr, flush=True)
while True:
    data, source = udp.recvfrom(65535)
    lines = data.decode().split("\r\n")
    keep = [l for l in lines if l.split(":")[0] in ("Via", "From", "To", "Call-ID", "CSeq")]
    print("got", lines[0], flush=True)
    udp.sendto(("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n").encode(), source)
"""


def test_proxy_factory_starts_restarts_and_stops(proxy_factory: Callable[..., RunningProxy]) -> None:
    proxy = proxy_factory(command=[sys.executable, "-c", STAND_IN_PROXY, "{config}"])

    assert proxy.running
    assert proxy.wait_for_log("stand-in listening on").endswith(str(proxy.port))
    assert proxy.wait_for_log("got OPTIONS sip:127.0.0.1")  # the log is read by a thread: wait, do not peek
    assert (proxy.options() or "").startswith("SIP/2.0 200")
    assert proxy.uri("tcp") == f"sip:127.0.0.1:{proxy.port};transport=tcp"
    assert proxy.users["alice"] == "alice-secret"

    first_pid = proxy.pid
    mark = proxy.log_mark()
    proxy.restart(kill=True)
    assert proxy.pid != first_pid
    assert proxy.wait_for_log("stand-in listening on", after=mark)

    assert proxy.stop() is not None
    assert not proxy.running and not proxy.exited_unexpectedly


def test_proxy_factory_reports_a_proxy_that_does_not_start(proxy_factory: Callable[..., RunningProxy]) -> None:
    with pytest.raises(AssertionError, match="exited with code 3 before answering OPTIONS"):
        proxy_factory(command=[sys.executable, "-c", "import sys; print('bad config: line 1'); sys.exit(3)"])
