"""A device registered over IPv6 rings and answers (issue 2).

The pjsua2 wheel from PyPI is built without IPv6, so the IPv6 device is
SIPp — a real SIP user agent too — registering alice over [::1] with digest auth (the benchmark's scenario),
then answering the call a pjsua2 phone on IPv4 makes. The proxy bridges the two families (RFC 5658 double
Record-Route).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from benchmarks.sipp import SCENARIOS, write_injection

from .phones import Phone, RunningProxy, free_port


def sipp(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("sipp")
    assert binary is not None, "SIPp is missing: `make test` installs it (Debian package sip-tester)"
    return subprocess.Popen([binary, *args, "-nostdin", "-trace_err"], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def test_device_over_ipv6_rings_and_answers_a_call_from_ipv4(
    proxy_factory: Callable[..., RunningProxy], phone_factory: Callable[..., Phone], tmp_path: Path
) -> None:
    # SIPp answers only MD5 challenges and reads only the first one.
    proxy = proxy_factory({"users": {"alice": {"password": "alice-secret", "digest_algorithms": ["MD5"]},
                                     "bob": "bob-secret"}}, ipv6=True)
    port = free_port("::1")
    injection = write_injection(tmp_path / "alice.csv", [("alice", "[::1]", port, proxy.users["alice"])])
    register = sipp(f"[::1]:{proxy.port}", "-i", "::1", "-p", str(port), "-sf", str(SCENARIOS / "register.xml"),
                    "-inf", str(injection), "-key", "domain", proxy.domain, "-key", "expires", "300",
                    "-auth_uri", proxy.domain, "-m", "1", cwd=tmp_path)
    _, errors = register.communicate(timeout=20)
    assert register.returncode == 0, errors.decode(errors="replace")

    device = sipp("-sf", str(Path(__file__).parent / "scenarios" / "uas_answer_sdp.xml"), "-i", "::1",
                  "-p", str(port), "-mp", str(free_port("::1")), "-m", "1", cwd=tmp_path)
    try:
        bob = phone_factory("bob")
        assert bob.register_at(proxy, "bob") == 200
        bob.call("alice")
        bob.wait_for("call_state", state="CONFIRMED")
        bob.hangup()
        bob.wait_for("call_state", state="DISCONNECTED")
        _, errors = device.communicate(timeout=20)
        # SIPp exits 0 only when the scenario ran through: INVITE, 180, 200,
        # ACK, BYE, 200 — the whole call reached the IPv6 device.
        assert device.returncode == 0, errors.decode(errors="replace")
    finally:
        if device.poll() is None:
            device.kill()
            device.wait()
