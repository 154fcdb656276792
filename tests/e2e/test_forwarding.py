"""Forwarding rules end to end: real pjsua2 phones, a pjsua2 trunk, the real sipfork.

The trunk ("gateway UA") is a pjsua2 phone started with
``challenge_first=True``: it answers every INVITE without credentials with
407 (realm "trunk", MD5, qop=auth), as SIP trunks do, and treats the retried
INVITE with ``Proxy-Authorization`` as an ordinary call it can ring, answer
or reject. Its port is the ``[[gateway]] uri`` of the configuration.

Ring times are 2-5 s; nothing sleeps: tests wait for the phones' events, and
``assert_no_event`` windows only prove that something did not happen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from .phones import Event, Phone, RunningProxy, digest_response

REASON = 'SIP;cause=200;text="Call completed elsewhere"'
NUMBER = "+4922166966966"
MOBILE = "+491701234567"
TRUNK_USER, TRUNK_PASSWORD = "pbx", "trunk-secret"

PhoneFactory = Callable[..., Phone]
ProxyFactory = Callable[..., RunningProxy]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def registered(phone_factory: PhoneFactory, proxy: RunningProxy, name: str) -> Phone:
    """A phone registered as the user ``name``."""
    phone = phone_factory(name)
    assert phone.register_at(proxy, name) == 200
    return phone


def desks(phone_factory: PhoneFactory, proxy: RunningProxy, *names: str,
          options: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Phone]:
    """A registered phone for each user in ``names`` (started side by side:
    each start is a process spawn), with per-name ``Phone.start`` options."""
    options = options or {}
    started: dict[str, Phone | BaseException] = {}

    def start(name: str) -> None:
        try:
            started[name] = phone_factory(name, **options.get(name, {}))
        except BaseException as error:  # raised below, in the test's thread
            started[name] = error

    threads = [threading.Thread(target=start, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in started.values():
        if isinstance(result, BaseException):
            raise result
    phones = {name: started[name] for name in names}
    for name, phone in phones.items():
        assert isinstance(phone, Phone) and phone.register_at(proxy, name) == 200
    return phones  # type: ignore[return-value]


def gateway(name: str, phone: Phone, **extra: Any) -> dict[str, Any]:
    """The ``[[gateway]]`` table for a trunk played by ``phone``."""
    return {"name": name, "uri": f"sip:{phone.host}:{phone.port}", "username": TRUNK_USER,
            "password": TRUNK_PASSWORD, **extra}


def number(*forwarding: Mapping[str, Any], otherwise: str | None = None, **extra: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"number": NUMBER, **extra}
    if otherwise is not None:
        table["otherwise"] = otherwise
    table["forwarding"] = list(forwarding)
    return table


def trunk_call(trunk: Phone, dialled: str, timeout: float = 10.0) -> Event:
    """The INVITE a challenging trunk accepts: first the one it challenged
    (no credentials), then the retry with valid Proxy-Authorization on a new
    branch with CSeq + 1. Returns the retry's ``incoming_call`` event."""
    first = trunk.wait_for("incoming_call", timeout=timeout)
    assert "Proxy-Authorization" not in first.headers
    assert trunk.wait_for("auto_action", call=first.call, action="challenge").error is None
    challenge = trunk.wait_for("sip_tx", status=407, sip_call_id=first.sip_call_id)
    retry = trunk.wait_for("incoming_call", timeout=timeout)
    assert retry.sip_call_id == first.sip_call_id
    assert retry.request_uri == first.request_uri
    assert retry.request_uri.startswith(f"sip:{dialled}@{trunk.host}:{trunk.port}")
    assert _cseq(retry) == _cseq(first) + 1
    assert _top_branch(retry) != _top_branch(first)
    params, expected = digest_response(retry.headers["Proxy-Authorization"], password=TRUNK_PASSWORD)
    assert params["username"] == TRUNK_USER and params["realm"] == "trunk"
    assert params["nonce"] in challenge.headers["Proxy-Authenticate"]
    assert params["uri"] == retry.request_uri
    assert params["response"] == expected
    return retry


def _cseq(ev: Event) -> int:
    return int(ev.headers["CSeq"].split()[0])


def _top_branch(ev: Event) -> str:
    via = ev.headers["Via"]
    return via.split("branch=", 1)[1].split(";", 1)[0]


def started(caller: Phone, call: int) -> float:
    """When the caller placed the call: before the proxy saw it, so a ring
    time measured from here is never shorter than configured (measuring from
    a callee's ringing would eat its own delivery delay under load)."""
    return caller.events("call_state", call=call, state="CALLING")[0].t


def ring_and_hang_up(caller: Phone, dialled: str, ringing: Phone) -> None:
    """``caller`` calls ``dialled``; ``ringing`` rings; the caller gives up."""
    call = caller.call(dialled)
    incoming = ringing.wait_for("incoming_call")
    caller.wait_for("call_state", call=call, state="EARLY")
    caller.hangup(call)
    assert caller.wait_for("call_state", call=call, state="DISCONNECTED").status == 487
    ringing.wait_for("call_state", call=incoming.call, state="DISCONNECTED")


# --------------------------------------------------------------------------
# 1. parallel ringing: a device, a ring group and an external number
# --------------------------------------------------------------------------


def test_parallel_device_group_and_mobile_the_mobile_answers_through_the_trunk(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory
) -> None:
    trunk = phone_factory("trunk", challenge_first=True)
    proxy = proxy_factory({
        "groups": [{"name": "office", "members": ["bob", "carol"]}],
        "gateways": [gateway("trunk", trunk)],
        "numbers": [number({"type": "always", "ringing": "parallel", "duration": 5,
                            "targets": ["alice", "group:office", MOBILE]})],
    })
    alice, bob, carol, dave = desks(phone_factory, proxy, "alice", "bob", "carol", "dave").values()

    call = dave.call(NUMBER)
    for desk in (alice, bob, carol):
        desk.wait_for("incoming_call")
    leg = trunk_call(trunk, MOBILE)
    # RFC 5806: the mobile sees which of our numbers was called, on both INVITEs.
    for invite in trunk.events("incoming_call"):
        assert f"sip:{NUMBER}@pbx.local" in invite.headers["Diversion"]
    dave.wait_for("call_state", call=call, state="EARLY")

    trunk.answer(leg.call)
    for desk in (alice, bob, carol):
        assert desk.wait_for("sip_rx", method="CANCEL").headers["Reason"] == REASON
        assert desk.wait_for("call_state", state="DISCONNECTED").status == 487
    assert dave.wait_for("call_state", call=call, state="CONFIRMED").status == 200
    # The caller's ACK for the 200 (its own CSeq) reaches the trunk with the
    # retry's CSeq, so the trunk's dialog is confirmed; the first ACK is the
    # proxy's own for the 407.
    trunk.wait_for("call_state", call=leg.call, state="CONFIRMED")
    acks = trunk.events("sip_rx", method="ACK", sip_call_id=leg.sip_call_id)
    assert [ack.cseq for ack in acks] == [_cseq(leg) - 1, _cseq(leg)]
    proxy.wait_for_log(f"answered by {MOBILE} via trunk")

    dave.hangup(call)
    bye = trunk.wait_for("sip_rx", method="BYE", sip_call_id=leg.sip_call_id)
    assert bye.cseq > _cseq(leg)
    trunk.wait_for("call_state", call=leg.call, state="DISCONNECTED")
    assert dave.wait_for("sip_rx", status=200, cseq_method="BYE").sip_call_id == leg.sip_call_id


# --------------------------------------------------------------------------
# 2. sequential ringing
# --------------------------------------------------------------------------


def test_sequential_first_target_rings_its_time_then_the_second_answers(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory
) -> None:
    proxy = proxy_factory({
        "numbers": [number({"type": "always", "ringing": "sequential", "duration": 5,
                            "targets": [{"target": "alice", "duration": 2}, "bob"]})],
    })
    alice, bob, dave = desks(phone_factory, proxy, "alice", "bob", "dave").values()

    call = dave.call(NUMBER)
    first = alice.wait_for("incoming_call")
    bob.assert_no_event("incoming_call", within=1.0)  # alice's turn
    cancel = alice.wait_for("sip_rx", method="CANCEL", timeout=5)
    assert "Reason" not in cancel.headers  # her time ran out: a missed call, not answered elsewhere
    assert cancel.t - started(dave, call) >= 1.95 and cancel.t - first.t <= 3.5
    second = bob.wait_for("incoming_call", timeout=5)
    assert second.t - started(dave, call) >= 1.95
    assert dave.events("call_state", call=call, state="DISCONNECTED") == []

    bob.answer(second.call)
    assert dave.wait_for("call_state", call=call, state="CONFIRMED").status == 200
    bob.wait_for("call_state", call=second.call, state="CONFIRMED")
    assert len(alice.events("incoming_call")) == 1
    dave.hangup(call)
    bob.wait_for("call_state", call=second.call, state="DISCONNECTED")


# --------------------------------------------------------------------------
# 3. falling through on no-answer; a device in both rules rings on
# --------------------------------------------------------------------------


def test_no_answer_falls_through_and_a_device_in_both_rules_keeps_ringing(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory
) -> None:
    proxy = proxy_factory({
        "numbers": [number(
            {"type": "always", "duration": 3, "targets": ["alice", "bob"]},
            {"type": "always", "duration": 4, "targets": ["alice", "carol"]},
        )],
    })
    alice, bob, carol, dave = desks(phone_factory, proxy, "alice", "bob", "carol", "dave").values()

    call = dave.call(NUMBER)
    ringing = alice.wait_for("incoming_call")
    bob.wait_for("incoming_call")
    # Rule 1's time runs out: bob stops (a missed call), carol starts.
    cancel = bob.wait_for("sip_rx", method="CANCEL", timeout=6)
    assert "Reason" not in cancel.headers
    assert cancel.t - started(dave, call) >= 2.95 and cancel.t - ringing.t <= 4.5
    carol_call = carol.wait_for("incoming_call", timeout=3)
    assert carol_call.t - started(dave, call) >= 2.95

    alice.answer(ringing.call)  # in rule 2's time, on the INVITE of rule 1
    assert dave.wait_for("call_state", call=call, state="CONFIRMED").status == 200
    assert carol.wait_for("sip_rx", method="CANCEL").headers["Reason"] == REASON
    alice.wait_for("call_state", call=ringing.call, state="CONFIRMED")
    assert len(alice.events("sip_rx", method="INVITE")) == 1
    assert alice.events("sip_rx", method="CANCEL") == []
    assert len(bob.events("incoming_call")) == 1
    dave.hangup(call)
    alice.wait_for("call_state", call=ringing.call, state="DISCONNECTED")


def test_the_last_turn_of_a_sequential_rule_rings_on_into_the_next_rule(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory
) -> None:
    # alice's own ring time ends with rule 1: she still rings on into rule 2.
    proxy = proxy_factory({
        "numbers": [number(
            {"type": "always", "ringing": "sequential", "duration": 2,
             "targets": ["bob", {"target": "alice", "duration": 2}]},
            {"type": "always", "duration": 4, "targets": ["alice", "carol"]},
        )],
    })
    alice, bob, carol, dave = desks(phone_factory, proxy, "alice", "bob", "carol", "dave").values()

    call = dave.call(NUMBER)
    bob.wait_for("incoming_call")
    assert "Reason" not in bob.wait_for("sip_rx", method="CANCEL", timeout=4).headers
    ringing = alice.wait_for("incoming_call", timeout=3)
    carol_call = carol.wait_for("incoming_call", timeout=5)
    assert carol_call.t - started(dave, call) >= 3.95
    alice.answer(ringing.call)
    assert dave.wait_for("call_state", call=call, state="CONFIRMED").status == 200
    assert carol.wait_for("sip_rx", method="CANCEL").headers["Reason"] == REASON
    alice.wait_for("call_state", call=ringing.call, state="CONFIRMED")
    assert len(alice.events("sip_rx", method="INVITE")) == 1
    assert alice.events("sip_rx", method="CANCEL") == []
    dave.hangup(call)
    alice.wait_for("call_state", call=ringing.call, state="DISCONNECTED")


# --------------------------------------------------------------------------
# 4. falling through on busy and on unreachable, by the rules' `on`
# --------------------------------------------------------------------------

FIVE = ("alice", "bob", "carol", "dave", "erin")
FIVE_USERS = {name: {"password": f"{name}-secret", "extension": str(11 + index)}
              for index, name in enumerate(FIVE)}

BUSY_OR_UNREACHABLE = {
    "users": FIVE_USERS,
    "numbers": [number(
        {"type": "always", "duration": 5, "targets": ["alice", "bob"]},
        {"type": "always", "on": ["busy"], "duration": 5, "targets": ["carol"]},
        {"type": "always", "on": ["unreachable"], "duration": 5, "targets": ["dave"]},
    )],
}


@pytest.mark.parametrize("answers", [(486, 486), (486, 603)], ids=["486-486", "486-603"])
def test_all_targets_busy_go_to_the_next_rule_on_busy(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory, answers: tuple[int, int]
) -> None:
    proxy = proxy_factory(BUSY_OR_UNREACHABLE)
    alice, bob, carol, dave, erin = desks(phone_factory, proxy, *FIVE, options={
        "alice": {"auto_reject": answers[0]}, "bob": {"auto_reject": answers[1]}}).values()

    call = erin.call(NUMBER)
    alice.wait_for("sip_tx", status=answers[0])
    bob.wait_for("sip_tx", status=answers[1])
    incoming = carol.wait_for("incoming_call")
    carol.answer(incoming.call)
    assert erin.wait_for("call_state", call=call, state="CONFIRMED").status == 200
    assert dave.events("incoming_call") == []  # the unreachable rule was skipped
    erin.hangup(call)
    carol.wait_for("call_state", call=incoming.call, state="DISCONNECTED")


@pytest.mark.parametrize("failures", [None, (480, 503)], ids=["nobody-registered", "480-503"])
def test_all_targets_unreachable_go_to_the_next_rule_on_unreachable(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory, failures: tuple[int, int] | None
) -> None:
    proxy = proxy_factory(BUSY_OR_UNREACHABLE)
    if failures is None:  # nobody registered for rule 1
        carol, dave, erin = desks(phone_factory, proxy, "carol", "dave", "erin").values()
    else:  # registered, but the phones fail the call
        alice, bob, carol, dave, erin = desks(phone_factory, proxy, *FIVE, options={
            "alice": {"auto_reject": failures[0]}, "bob": {"auto_reject": failures[1]}}).values()

    call = erin.call(NUMBER)
    if failures is not None:
        alice.wait_for("sip_tx", status=failures[0])
        bob.wait_for("sip_tx", status=failures[1])
    incoming = dave.wait_for("incoming_call")
    dave.answer(incoming.call)
    assert erin.wait_for("call_state", call=call, state="CONFIRMED").status == 200
    assert carol.events("incoming_call") == []  # the busy rule was skipped
    erin.hangup(call)
    dave.wait_for("call_state", call=incoming.call, state="DISCONNECTED")


# --------------------------------------------------------------------------
# 5. schedule, date and caller filters (with the proxy's test clock)
# --------------------------------------------------------------------------

OUTSIDE_HOST = "127.0.0.2"  # "the provider": calls from here need no password
OUTSIDE_CALLER = "+4930123456"


def filtered_config(gateway_port: int = 5999) -> dict[str, Any]:
    return {
        "users": FIVE_USERS,
        "proxy": {"timezone": "Europe/Berlin"},
        "gateways": [{"name": "trunk", "uri": f"sip:{OUTSIDE_HOST}:{gateway_port}", "inbound_from": [OUTSIDE_HOST]}],
        "numbers": [number(
            {"type": "always", "callers": ["anonymous"], "duration": 5, "targets": ["dave"]},
            {"type": "always", "callers": ["+4930*"], "duration": 5, "targets": ["carol"]},
            {"type": "schedule", "schedule": ["mon-fri 08:00-18:00"], "duration": 5, "targets": ["alice"]},
            {"type": "date", "dates": ["2026-12-24"], "duration": 5, "targets": ["bob"]},
            otherwise="busy",
        )],
    }


def only_rang(phones: Mapping[str, Phone], expected: Mapping[str, int]) -> None:
    """Each phone but the caller erin got exactly the expected number of
    calls (0 if not named), also after a short look for late INVITEs."""
    callees = {name: phone for name, phone in phones.items() if name != "erin"}
    for name, phone in callees.items():
        if expected.get(name, 0) == 0:
            phone.assert_no_event("incoming_call", within=0.3)
            break  # one window covers them all: the INVITEs of a rule leave together
    got = {name: len(phone.events("incoming_call")) for name, phone in callees.items()}
    assert got == {name: expected.get(name, 0) for name in got}


def test_office_hours_rule_and_caller_filters_on_a_monday_morning(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory
) -> None:
    proxy = proxy_factory(filtered_config(), args=["--clock", "2026-03-02 10:00"])  # a Monday, Berlin time
    phones = desks(phone_factory, proxy, *FIVE)
    erin = phones["erin"]

    ring_and_hang_up(erin, NUMBER, phones["alice"])  # the schedule rule
    # RFC 3323 Privacy: id hides the caller: the anonymous rule, first in the chain.
    call = erin.call(NUMBER, headers={"Privacy": "id"})
    incoming = phones["dave"].wait_for("incoming_call")
    erin.wait_for("call_state", call=call, state="EARLY")
    erin.hangup(call)
    assert erin.wait_for("call_state", call=call, state="DISCONNECTED").status == 487
    phones["dave"].wait_for("call_state", call=incoming.call, state="DISCONNECTED")
    # A caller from the provider, showing a Berlin number: the prefix rule.
    outside = phone_factory(OUTSIDE_CALLER, host=OUTSIDE_HOST)
    ring_and_hang_up(outside, f"sip:{NUMBER}@{proxy.host}:{proxy.port}", phones["carol"])
    # A caller from the provider who withholds the number (From user "anonymous").
    anonymous = phone_factory("anonymous", host=OUTSIDE_HOST)
    ring_and_hang_up(anonymous, f"sip:{NUMBER}@{proxy.host}:{proxy.port}", phones["dave"])
    only_rang(phones, {"alice": 1, "dave": 2, "carol": 1})


def test_date_rule_comes_first_on_its_day(proxy_factory: ProxyFactory, phone_factory: PhoneFactory) -> None:
    # Thursday 24 December: the office-hours rule applies too, but date rules lead.
    proxy = proxy_factory(filtered_config(), args=["--clock", "2026-12-24 10:00"])
    phones = desks(phone_factory, proxy, *FIVE)
    ring_and_hang_up(phones["erin"], NUMBER, phones["bob"])
    only_rang(phones, {"bob": 1})


@pytest.mark.parametrize("clock", ["2026-03-02 20:00", "2026-03-07 10:00"], ids=["monday-evening", "saturday"])
def test_outside_office_hours_no_rule_applies_and_otherwise_answers(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory, clock: str
) -> None:
    proxy = proxy_factory(filtered_config(), args=["--clock", clock])
    phones = desks(phone_factory, proxy, *FIVE)
    call = phones["erin"].call(NUMBER)
    assert phones["erin"].wait_for("call_state", call=call, state="DISCONNECTED").status == 486
    only_rang(phones, {})


# --------------------------------------------------------------------------
# 6. otherwise: a status, or a mailbox
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("otherwise", "status"), [("busy", 486), ("decline", 603)])
def test_otherwise_status_after_the_rules_ring_time(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory, otherwise: str, status: int
) -> None:
    proxy = proxy_factory({"numbers": [number({"type": "always", "duration": 2, "targets": ["alice"]},
                                              otherwise=otherwise)]})
    alice, dave = desks(phone_factory, proxy, "alice", "dave").values()
    call = dave.call(NUMBER)
    alice.wait_for("incoming_call")
    ended = dave.wait_for("call_state", call=call, state="DISCONNECTED", timeout=6)
    assert ended.status == status
    assert ended.t - started(dave, call) >= 1.95
    assert "Reason" not in alice.wait_for("sip_rx", method="CANCEL").headers


def test_otherwise_mailbox_takes_the_call_after_the_rules(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory
) -> None:
    mailbox = phone_factory("mailbox", auto_answer_after=0.5)
    proxy = proxy_factory({"numbers": [number({"type": "always", "duration": 2, "targets": ["alice"]},
                                              otherwise=f"sip:mailbox@127.0.0.1:{mailbox.port}")]})
    alice, dave = desks(phone_factory, proxy, "alice", "dave").values()
    call = dave.call(NUMBER)
    alice.wait_for("incoming_call")
    assert "Reason" not in alice.wait_for("sip_rx", method="CANCEL", timeout=5).headers
    incoming = mailbox.wait_for("incoming_call")
    assert incoming.request_uri == f"sip:mailbox@127.0.0.1:{mailbox.port}"
    assert incoming.t - started(dave, call) >= 1.95
    assert dave.wait_for("call_state", call=call, state="CONFIRMED").status == 200
    mailbox.wait_for("call_state", call=incoming.call, state="CONFIRMED")
    dave.hangup(call)
    mailbox.wait_for("sip_rx", method="BYE")
    mailbox.wait_for("call_state", call=incoming.call, state="DISCONNECTED")


# --------------------------------------------------------------------------
# 7. calls from a trunk's inbound_from address (CONFIG.md Semantics 6)
# --------------------------------------------------------------------------


def test_inbound_caller_may_not_dial_out_but_a_forwarding_may_ring_the_mobile(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory
) -> None:
    trunk = phone_factory("trunk", challenge_first=True)
    proxy = proxy_factory({
        "gateways": [gateway("trunk", trunk, inbound_from=[OUTSIDE_HOST])],
        "numbers": [number({"type": "always", "duration": 5, "targets": ["alice", MOBILE]})],
    })
    alice = registered(phone_factory, proxy, "alice")
    outside = phone_factory(OUTSIDE_CALLER, host=OUTSIDE_HOST)  # no credentials at all

    # Dialling an external number through us: refused, nothing reaches the trunk.
    call = outside.call(f"sip:+491709999999@{proxy.host}:{proxy.port}")
    assert outside.wait_for("call_state", call=call, state="DISCONNECTED").status == 403
    trunk.assert_no_event("incoming_call", within=0.5)
    assert alice.events("incoming_call") == []

    # Dialling our number, whose rule names the mobile: the mobile rings through the trunk.
    call = outside.call(f"sip:{NUMBER}@{proxy.host}:{proxy.port}")
    alice.wait_for("incoming_call")
    leg = trunk_call(trunk, MOBILE)
    assert f"sip:{NUMBER}@pbx.local" in leg.headers["Diversion"]
    assert leg.from_user == OUTSIDE_CALLER  # the mobile shows the original caller
    trunk.answer(leg.call)
    assert alice.wait_for("sip_rx", method="CANCEL").headers["Reason"] == REASON
    assert outside.wait_for("call_state", call=call, state="CONFIRMED").status == 200
    trunk.wait_for("call_state", call=leg.call, state="CONFIRMED")
    outside.hangup(call)
    trunk.wait_for("call_state", call=leg.call, state="DISCONNECTED")
    assert outside.wait_for("call_state", call=call, state="DISCONNECTED")


# --------------------------------------------------------------------------
# 8. SIGHUP: new rules for the next call; a broken file changes nothing
# --------------------------------------------------------------------------


def test_reload_changes_the_next_call_and_a_broken_file_keeps_the_old_rules(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory
) -> None:
    proxy = proxy_factory({"numbers": [number({"type": "always", "duration": 5, "targets": ["alice"]})]})
    alice, bob, dave = desks(phone_factory, proxy, "alice", "bob", "dave").values()
    ring_and_hang_up(dave, NUMBER, alice)

    original = proxy.config_path.read_text()
    assert original.count('targets = ["alice"]') == 1
    changed = original.replace('targets = ["alice"]', 'targets = ["bob"]')
    proxy.write_config(changed)
    mark = proxy.log_mark()
    proxy.reload()
    proxy.wait_for_log("configuration reloaded", after=mark)
    ring_and_hang_up(dave, NUMBER, bob)

    # A typo: the reload is refused, naming the key and its line; bob still rings.
    broken = changed.replace('targets = ["bob"]', 'targets = ["bob"]\nringing = "paralel"')
    line = broken.splitlines().index('ringing = "paralel"') + 1
    proxy.write_config(broken)
    mark = proxy.log_mark()
    proxy.reload()
    refusal = proxy.wait_for_log("reload refused", after=mark)
    assert f"proxy.toml:{line}:" in refusal and "number[0].forwarding[0].ringing" in refusal, refusal
    assert not proxy.log_contains("configuration reloaded", after=mark)
    ring_and_hang_up(dave, NUMBER, bob)
    assert len(alice.events("incoming_call")) == 1
    assert len(bob.events("incoming_call")) == 2


# --------------------------------------------------------------------------
# 9. a forwarding loop through ourselves
# --------------------------------------------------------------------------

LOOP_CONFIG = """
[proxy]
domain = "pbx.local"

[[user]]
name = "alice"
password = "alice-secret"

[[user]]
name = "dave"
password = "dave-secret"

[[number]]
number = "+4922100000001"
[[number.forwarding]]
duration = 5
targets = ["sip:+4922100000002@$host:$port"]

[[number]]
number = "+4922100000002"
[[number.forwarding]]
duration = 5
targets = ["sip:+4922100000001@$host:$port"]

[[number]]
number = "+4922100000003"
[[number.forwarding]]
duration = 5
targets = ["sip:alice@$host:$port"]
"""


def test_forwarding_loop_through_ourselves_ends_at_once_in_a_final_error(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory
) -> None:
    # +…01 forwards to sipfork itself dialling +…02, which forwards back.
    proxy = proxy_factory(LOOP_CONFIG)
    dave = registered(phone_factory, proxy, "dave")
    call = dave.call("+4922100000001")
    ended = dave.wait_for("call_state", call=call, state="DISCONNECTED", timeout=5)
    assert ended.t - dave.events("call_state", call=call, state="CALLING")[0].t < 2.0
    # The second visit of +…01 is answered 482 where the loop closes; for
    # the caller, nothing answered, so the number's `otherwise` decides
    # (CONFIG.md Semantics 5: "unavailable", 480, by default).
    assert ended.status == 480, ended
    proxy.wait_for_log("loop detected for +4922100000001")
    proxy.wait_for_log("call dave → number +4922100000001: 480")
    log = proxy.log
    assert log.count("loop detected") == 1
    assert log.count("call dave → number") == 2  # +…01 and +…02 once each: no storm


def test_forwarding_to_a_sip_uri_naming_ourselves_reaches_our_user(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory
) -> None:
    # The forked INVITE comes back to sipfork (a spiral): it rings alice
    # instead of being challenged like a stranger's call.
    proxy = proxy_factory(LOOP_CONFIG)
    alice, dave = desks(phone_factory, proxy, "alice", "dave").values()
    call = dave.call("+4922100000003")
    incoming = alice.wait_for("incoming_call")
    assert incoming.from_user == "dave"
    alice.answer(incoming.call)
    assert dave.wait_for("call_state", call=call, state="CONFIRMED").status == 200
    alice.wait_for("call_state", call=incoming.call, state="CONFIRMED")
    dave.hangup(call)
    alice.wait_for("sip_rx", method="BYE")
    alice.wait_for("call_state", call=incoming.call, state="DISCONNECTED")
    assert dave.wait_for("call_state", call=call, state="DISCONNECTED")
