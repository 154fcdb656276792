"""Calls between real pjsua2 phones through a running sipfork (issue 2).

Every phone is its own pjsua2 process on loopback; the proxy is the real
`sipfork run` on a proxy.toml the test writes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from .phones import Phone, RunningProxy

REASON = 'SIP;cause=200;text="Call completed elsewhere"'
PhoneFactory = Callable[..., Phone]


def registered(phone_factory: PhoneFactory, proxy: RunningProxy, name: str, user: str, **options: object) -> Phone:
    transport = options.pop("register_transport", None)
    phone = phone_factory(name, **options)
    assert phone.register_at(proxy, user, transport=transport) == 200
    return phone


def test_both_devices_ring_one_answers_the_other_gets_cancel_with_reason(
    proxy: RunningProxy, phone_factory: PhoneFactory
) -> None:
    alice1 = registered(phone_factory, proxy, "alice1", "alice")
    alice2 = registered(phone_factory, proxy, "alice2", "alice")
    bob = registered(phone_factory, proxy, "bob", "bob")
    bob.call("alice")
    alice1.wait_for("incoming_call")
    alice2.wait_for("incoming_call")
    bob.wait_for("call_state", state="EARLY")
    alice1.answer()
    cancel = alice2.wait_for("sip_rx", method="CANCEL")
    assert cancel.headers["Reason"] == REASON
    bob.wait_for("call_state", state="CONFIRMED")
    alice1.wait_for("call_state", state="CONFIRMED")
    assert alice2.wait_for("call_state", state="DISCONNECTED").status == 487
    bob.hangup()
    alice1.wait_for("sip_rx", method="BYE")
    alice1.wait_for("call_state", state="DISCONNECTED")
    proxy.wait_for_log("answered by alice")


def test_nobody_answers_caller_gets_480_after_ring_time_every_branch_cancelled(
    proxy_factory: Callable[..., RunningProxy], phone_factory: PhoneFactory
) -> None:
    proxy = proxy_factory({"proxy": {"ring_time": 2}})
    alice1 = registered(phone_factory, proxy, "alice1", "alice")
    alice2 = registered(phone_factory, proxy, "alice2", "alice")
    bob = registered(phone_factory, proxy, "bob", "bob")
    bob.call("11")
    ended = bob.wait_for("call_state", state="DISCONNECTED", timeout=15)
    assert ended.status == 480
    for phone in (alice1, alice2):
        cancel = phone.wait_for("sip_rx", method="CANCEL")
        assert "Reason" not in cancel.headers  # a missed call, not one answered elsewhere
    assert ended.t - bob.events("call_state", state="CALLING")[0].t >= 2.0


def test_one_device_busy_the_other_still_rings_and_answers(
    proxy: RunningProxy, phone_factory: PhoneFactory
) -> None:
    alice1 = registered(phone_factory, proxy, "alice1", "alice")
    alice2 = registered(phone_factory, proxy, "alice2", "alice")
    bob = registered(phone_factory, proxy, "bob", "bob")
    bob.call("alice")
    alice1.wait_for("incoming_call")
    alice2.wait_for("incoming_call")
    alice1.reject(code=486)
    alice1.wait_for("call_state", state="DISCONNECTED")
    alice2.answer()
    assert bob.wait_for("call_state", state="CONFIRMED")
    assert not bob.events("call_state", state="DISCONNECTED")
    bob.hangup()
    alice2.wait_for("call_state", state="DISCONNECTED")


def test_caller_hangs_up_before_an_answer_every_branch_cancelled_caller_gets_487(
    proxy: RunningProxy, phone_factory: PhoneFactory
) -> None:
    alice1 = registered(phone_factory, proxy, "alice1", "alice")
    alice2 = registered(phone_factory, proxy, "alice2", "alice")
    bob = registered(phone_factory, proxy, "bob", "bob")
    bob.call("alice")
    alice1.wait_for("incoming_call")
    alice2.wait_for("incoming_call")
    bob.wait_for("call_state", state="EARLY")
    bob.hangup()
    assert bob.wait_for("call_state", state="DISCONNECTED").status == 487
    for phone in (alice1, alice2):
        phone.wait_for("sip_rx", method="CANCEL")
        phone.wait_for("call_state", state="DISCONNECTED")


def test_unknown_user_404_and_user_without_device_480(proxy: RunningProxy, phone_factory: PhoneFactory) -> None:
    bob = registered(phone_factory, proxy, "bob", "bob")
    bob.call("nobody")
    assert bob.wait_for("call_state", state="DISCONNECTED").status == 404
    bob.call("carol")
    assert bob.wait_for("call_state", state="DISCONNECTED").status == 480


def test_unregistered_device_no_longer_rings(proxy: RunningProxy, phone_factory: PhoneFactory) -> None:
    alice1 = registered(phone_factory, proxy, "alice1", "alice")
    alice2 = registered(phone_factory, proxy, "alice2", "alice")
    bob = registered(phone_factory, proxy, "bob", "bob")
    assert alice2.unregister() == 200
    bob.call("alice")
    alice1.wait_for("incoming_call")
    alice1.answer()
    bob.wait_for("call_state", state="CONFIRMED")
    assert alice2.events("incoming_call") == []
    bob.hangup()


def test_wrong_password_is_refused_and_leaves_no_binding(
    proxy: RunningProxy, phone_factory: PhoneFactory
) -> None:
    intruder = phone_factory("intruder")
    assert intruder.register(proxy.host, proxy.port, "alice", "guess", domain=proxy.domain) == 403
    listing = subprocess.run([sys.executable, "-m", "sipfork", "registrations", "-c", str(proxy.config_path)],
                             capture_output=True, text=True, timeout=30, check=True)
    assert "alice" not in listing.stdout


def test_call_without_credentials_is_challenged_407(proxy: RunningProxy, phone_factory: PhoneFactory) -> None:
    registered(phone_factory, proxy, "alice1", "alice")
    stranger = phone_factory("stranger")  # never registered: no credentials to answer with
    stranger.call(f"sip:alice@{proxy.host}:{proxy.port}")
    assert stranger.wait_for("call_state", state="DISCONNECTED").status == 407


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "kill-9"])
def test_registrations_survive_a_restart(
    proxy: RunningProxy, phone_factory: PhoneFactory, kill: bool
) -> None:
    alice1 = registered(phone_factory, proxy, "alice1", "alice")
    alice2 = registered(phone_factory, proxy, "alice2", "alice", transport="tcp", register_transport="tcp")
    bob = registered(phone_factory, proxy, "bob", "bob")
    proxy.restart(kill=kill)
    bob.call("alice")
    alice1.wait_for("incoming_call")
    alice2.wait_for("incoming_call")
    alice2.answer()
    alice1.wait_for("sip_rx", method="CANCEL")
    bob.wait_for("call_state", state="CONFIRMED")
    bob.hangup()
    alice2.wait_for("call_state", state="DISCONNECTED")


def test_device_over_tcp_rings_answers_and_gets_the_bye(
    proxy: RunningProxy, phone_factory: PhoneFactory
) -> None:
    alice_udp = registered(phone_factory, proxy, "alice-udp", "alice")
    alice_tcp = registered(phone_factory, proxy, "alice-tcp", "alice", transport="tcp", register_transport="tcp")
    bob = registered(phone_factory, proxy, "bob", "bob")
    bob.call("alice")
    incoming = alice_tcp.wait_for("incoming_call")
    alice_udp.wait_for("incoming_call")
    assert "tcp" in incoming.text.splitlines()[1].lower()  # the INVITE's top Via came over TCP
    alice_tcp.answer()
    assert alice_udp.wait_for("sip_rx", method="CANCEL").headers["Reason"] == REASON
    bob.wait_for("call_state", state="CONFIRMED")
    bob.hangup()
    alice_tcp.wait_for("sip_rx", method="BYE")
