"""The benchmark harness's pcap reader and latency matcher (benchmarks/capture.py).

Each test writes a small classic pcap file by hand (global header, then one
record per datagram: link-layer header, IPv4, UDP, a SIP message) with known
time stamps: an INVITE in from a caller, three forked INVITEs out with the
proxy's Via on top and the caller's branch second, a 200 in from the
answering contact, the 200 out to the caller, two CANCELs. The latencies the
matcher reports must be the differences of those time stamps, and packets
that belong to no call or are not well-formed must be skipped.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the harness lives in benchmarks/ beside the package
    sys.path.insert(0, str(ROOT))

from benchmarks import capture  # noqa: E402
from benchmarks.layout import Endpoint  # noqa: E402

CALLERS = (Endpoint("127.0.0.1", 5061, 16000, 18880), Endpoint("127.0.0.1", 5101, 16110, 18901))
CONTACTS = (
    Endpoint("127.0.0.2", 5082, 16010, 18881),
    Endpoint("127.0.0.3", 5083, 16020, 18882),
    Endpoint("127.0.0.4", 5084, 16030, 18883),
)
PROXY = ("127.0.0.1", 5060)
PROXY_OWN = ("127.0.0.1", 41234)  # a worker's own port: forked requests leave from it

LINKTYPE_ETHERNET = 1  # what dumpcap writes for Linux's lo
LINKTYPE_NULL = 0  # BSD loopback: a 4-byte address family in the file's byte order
LINKTYPE_LINUX_SLL = 113


# --- building a pcap ------------------------------------------------------------


def ipv4(src: str, dst: str, payload: bytes, *, proto: int = 17, flags_frag: int = 0, total: int | None = None) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45, 0, 20 + len(payload) if total is None else total, 0, flags_frag, 64, proto, 0,
        bytes(int(x) for x in src.split(".")), bytes(int(x) for x in dst.split(".")),
    )  # fmt: skip
    return header + payload


def udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes, *, length: int | None = None, **ip) -> bytes:
    header = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload) if length is None else length, 0)
    return ipv4(src[0], dst[0], header + payload, **ip)


def frame(linktype: int, endian: str, ip: bytes, ethertype: int = 0x0800) -> bytes:
    if linktype == LINKTYPE_ETHERNET:
        return bytes(12) + struct.pack("!H", ethertype) + ip
    if linktype == LINKTYPE_NULL:
        return struct.pack(endian + "I", 2 if ethertype == 0x0800 else 30) + ip
    if linktype == LINKTYPE_LINUX_SLL:
        return struct.pack("!HHH8sH", 0, 772, 6, bytes(8), ethertype) + ip
    raise ValueError(linktype)


def pcap(records: list[tuple[int, bytes]], *, linktype: int, endian: str = "<", nanos: bool = False) -> bytes:
    """A classic pcap file of (time in µs since the epoch, frame) records."""
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for t_us, data in records:
        sec, us = divmod(t_us, 1_000_000)
        out.append(struct.pack(endian + "IIII", sec, us * 1000 if nanos else us, len(data), len(data)) + data)
    return b"".join(out)


# --- SIP messages ---------------------------------------------------------------


def via(addr: tuple[str, int], branch: str) -> str:
    return f"Via: SIP/2.0/UDP {addr[0]}:{addr[1]};branch={branch}"


def request(method: str, uri: str, vias: list[str], call_id: str, cseq: str) -> bytes:
    return (
        "\r\n".join(
            [f"{method} {uri} SIP/2.0", *vias, "From: <sip:caller@127.0.0.1>;tag=1", "To: <sip:bench@bench.local>",
             f"Call-ID: {call_id}", f"CSeq: {cseq}", "Max-Forwards: 70", "Content-Length: 0"]
        )
        + "\r\n\r\n"
    ).encode()  # fmt: skip


def response(status: str, vias: list[str], call_id: str, cseq: str) -> bytes:
    return (
        "\r\n".join(
            [f"SIP/2.0 {status}", *vias, "From: <sip:caller@127.0.0.1>;tag=1", "To: <sip:bench@bench.local>;tag=2",
             f"Call-ID: {call_id}", f"CSeq: {cseq}", "Content-Length: 0"]
        )
        + "\r\n\r\n"
    ).encode()  # fmt: skip


def one_call(t0: int, caller: Endpoint, call_id: str, delays_us: dict[str, int]) -> list[tuple[int, tuple, tuple, bytes]]:
    """The datagrams of one call (time in µs, source, destination, payload),
    the proxy's sends `delays_us` after what they answer."""
    cb = f"z9hG4bK-{call_id}-caller"
    caller_via = via(caller.address, cb)
    branches = [f"z9hG4bK-proxy-{call_id}-{i}" for i in range(3)]
    proxy_vias = [via(PROXY_OWN, b) for b in branches]
    invite_at = [t0 + delays_us[f"fork{i}"] for i in range(3)]
    ok_in = t0 + 50_000
    out = [
        (t0, caller.address, PROXY, request("INVITE", "sip:bench@bench.local", [caller_via], call_id, "1 INVITE")),
    ]
    for i, contact in enumerate(CONTACTS):
        fork = request("INVITE", f"sip:bench@{contact.host}:{contact.port}", [proxy_vias[i], caller_via], call_id, "1 INVITE")
        out.append((invite_at[i], PROXY_OWN, contact.address, fork))
        # a retransmission later: only the first copy counts
        out.append((invite_at[i] + 500_000, PROXY_OWN, contact.address, fork))
        out.append((invite_at[i] + 200, contact.address, PROXY_OWN,
                    response("180 Ringing", [proxy_vias[i], caller_via], call_id, "1 INVITE")))  # fmt: skip
    out.append((t0 + 1_200, PROXY, caller.address, response("100 Trying", [caller_via], call_id, "1 INVITE")))
    out.append((ok_in, CONTACTS[0].address, PROXY_OWN, response("200 OK", [proxy_vias[0], caller_via], call_id, "1 INVITE")))
    out.append((ok_in + delays_us["relay"], PROXY, caller.address,
                response("200 OK", [caller_via], call_id, "1 INVITE")))  # fmt: skip
    for i in (1, 2):
        out.append((ok_in + delays_us[f"cancel{i}"], PROXY_OWN, CONTACTS[i].address,
                    request("CANCEL", f"sip:bench@{CONTACTS[i].host}", [proxy_vias[i]], call_id, "1 CANCEL")))  # fmt: skip
    # the 200 to the BYE is no 200 to the INVITE
    out.append((ok_in + 200_000, CONTACTS[0].address, PROXY_OWN, response("200 OK", [via(PROXY_OWN, "z9hG4bK-bye")], call_id, "2 BYE")))
    out.append((ok_in + 200_200, PROXY, caller.address, response("200 OK", [caller_via], call_id, "2 BYE")))
    return out


CALL_A = {"fork0": 800, "fork1": 900, "fork2": 1050, "relay": 400, "cancel1": 600, "cancel2": 750}
CALL_B = {"fork0": 1500, "fork1": 1200, "fork2": 1300, "relay": 250, "cancel1": 900, "cancel2": 500}


T0 = 1_700_000_000_250_000  # µs since the epoch


def two_calls() -> list[tuple[int, tuple, tuple, bytes]]:
    """Call A from the first caller, call B from the second, overlapping."""
    packets = one_call(T0, CALLERS[0], "1-100-c0@127.0.0.1", CALL_A)
    packets += one_call(T0 + 10_000, CALLERS[1], "1-101-c1@127.0.0.1", CALL_B)
    return sorted(packets, key=lambda p: p[0])


def records(packets, linktype: int, endian: str = "<") -> list[tuple[int, bytes]]:
    return [(t, frame(linktype, endian, udp(src, dst, payload))) for t, src, dst, payload in packets]


def expected(delays: dict[str, int]) -> dict[str, int]:
    forks = [delays[f"fork{i}"] for i in range(3)]
    cancels = [delays["cancel1"], delays["cancel2"]]
    return {
        "invite_first_branch": min(forks),
        "invite_last_branch": max(forks),
        "ok_first_cancel": min(cancels),
        "ok_last_cancel": max(cancels),
        "ok_relay": delays["relay"],
    }


# the reader keeps times as float seconds since the epoch: a fraction of a µs
TOLERANCE_US = 0.5


def assert_two_calls(result: dict) -> None:
    assert result["completeness"] == {
        "calls": 2,
        "calls_with_3_branches": 2,
        "calls_with_2_cancels": 2,
        "calls_answered_to_caller": 2,
    }
    a, b = expected(CALL_A), expected(CALL_B)
    for metric in capture.METRICS:
        assert sorted(result["samples"][metric]) == pytest.approx(sorted([a[metric], b[metric]]), abs=TOLERANCE_US), metric
        assert result["summary"][metric]["n"] == 2
        assert result["summary"][metric]["max"] == pytest.approx(max(a[metric], b[metric]), abs=TOLERANCE_US)


# --- the tests ------------------------------------------------------------------


@pytest.mark.parametrize(
    "linktype, endian, nanos",
    [
        (LINKTYPE_ETHERNET, "<", False),  # dumpcap -P on Linux's lo
        (LINKTYPE_NULL, ">", True),
        (LINKTYPE_LINUX_SLL, "<", False),
    ],
)
def test_latencies_are_the_time_stamp_differences(tmp_path, linktype, endian, nanos):
    path = tmp_path / "calls.pcap"
    path.write_bytes(pcap(records(two_calls(), linktype, endian), linktype=linktype, endian=endian, nanos=nanos))
    result = capture.analyse(path, CALLERS, CONTACTS)
    assert_two_calls(result)
    assert result["pcap_bytes"] == path.stat().st_size


def test_reader_returns_addresses_times_and_payloads():
    packets = two_calls()[:3]
    datagrams = list(capture.parse_pcap(pcap(records(packets, LINKTYPE_ETHERNET), linktype=LINKTYPE_ETHERNET)))
    assert [(d.src, d.dst, d.payload) for d in datagrams] == [(p[1], p[2], p[3]) for p in packets]
    assert [d.time for d in datagrams] == pytest.approx([p[0] / 1e6 for p in packets], abs=1e-6)


def test_one_caller_of_two_only_matches_its_own_calls():
    data = pcap(records(two_calls(), LINKTYPE_ETHERNET), linktype=LINKTYPE_ETHERNET)
    result = capture.analyse_datagrams(capture.parse_pcap(data), CALLERS[:1], CONTACTS)
    assert result["completeness"]["calls"] == 1
    a = expected(CALL_A)
    for metric in capture.METRICS:
        assert result["samples"][metric] == pytest.approx([a[metric]], abs=TOLERANCE_US)


def test_unmatched_and_malformed_packets_are_skipped():
    lt, e = LINKTYPE_ETHERNET, "<"
    t = T0 - 100_000
    cid = "1-100-c0@127.0.0.1"
    caller, contact = CALLERS[0].address, CONTACTS[1].address
    sip_invite = request("INVITE", "sip:bench@bench.local", [via(caller, "z9hG4bK-x")], "9-9@127.0.0.1", "1 INVITE")
    junk = [
        # SIP that matches no call: a forked INVITE whose second Via is not
        # the caller's branch, a CANCEL of a branch never forked, a 200 to
        # the caller for a call whose INVITE was not captured, an OPTIONS
        frame(lt, e, udp(PROXY_OWN, contact, request(
            "INVITE", "sip:bench@127.0.0.3", [via(PROXY_OWN, "z9hG4bK-p"), via(caller, "z9hG4bK-other")], cid, "1 INVITE"))),
        frame(lt, e, udp(PROXY_OWN, contact, request("CANCEL", "sip:bench@127.0.0.3", [via(PROXY_OWN, "z9hG4bK-never")], cid, "1 CANCEL"))),
        frame(lt, e, udp(PROXY, caller, response("200 OK", [via(caller, "z9hG4bK-y")], "7-7@127.0.0.1", "1 INVITE"))),
        frame(lt, e, udp(caller, PROXY, request("OPTIONS", "sip:127.0.0.1", [via(caller, "z9hG4bK-o")], "8-8@x", "1 OPTIONS"))),
        # not SIP, or SIP without what the matcher needs
        frame(lt, e, udp(caller, PROXY, b"\x80\x00\x12\x34" + bytes(160))),  # RTP-like
        frame(lt, e, udp(caller, PROXY, b"")),
        frame(lt, e, udp(caller, PROXY, b"INVITE")),
        frame(lt, e, udp(caller, PROXY, b"SIP/2.0 abc Bad\r\nCall-ID: z\r\n\r\n")),
        frame(lt, e, udp(caller, PROXY, b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1\r\nCSeq: 1 INVITE\r\n\r\n")),
        frame(lt, e, udp(PROXY, caller, b"SIP/2.0 200 \xff\r\nVia \xff\xfe\r\nCall-ID: \xff\xfe\r\nCSeq:\r\n\r\n")),
        # not IPv4/UDP, or cut short
        frame(lt, e, udp(caller, PROXY, sip_invite, proto=6)),  # TCP
        frame(lt, e, udp(caller, PROXY, sip_invite, flags_frag=0x2000)),  # a first fragment
        frame(lt, e, udp(caller, PROXY, sip_invite, flags_frag=0x0010)),  # a later fragment
        frame(lt, e, udp(caller, PROXY, sip_invite, length=4000)),  # UDP length past the datagram
        frame(lt, e, udp(caller, PROXY, sip_invite, total=4000)),  # IP length past the frame
        frame(lt, e, udp(caller, PROXY, sip_invite)[:30]),  # cut inside the UDP header
        frame(lt, e, b"\x60" + bytes(60), ethertype=0x86DD),  # IPv6
        frame(lt, e, bytes(28), ethertype=0x0806),  # ARP
        frame(lt, e, b"\x45\x00"),
        bytes(5),  # shorter than an Ethernet header
        b"",
    ]
    calls = records(two_calls(), lt, e)
    # the junk between the calls' datagrams, and again at the start
    mixed = [(t + i * 100, j) for i, j in enumerate(junk)]
    for i, rec in enumerate(calls):
        mixed.append(rec)
        mixed.append((rec[0], junk[i % len(junk)]))
    mixed.sort(key=lambda r: r[0])
    data = pcap(mixed, linktype=lt)
    result = capture.analyse_datagrams(capture.parse_pcap(data), CALLERS, CONTACTS)
    assert_two_calls(result)

    # a last record cut short (dumpcap stopped mid-write) ends the file
    cut = data + struct.pack("<IIII", t // 1_000_000 + 9, 0, 500, 500) + bytes(40)
    assert_two_calls(capture.analyse_datagrams(capture.parse_pcap(cut), CALLERS, CONTACTS))
    # and so does a record header cut short
    assert_two_calls(capture.analyse_datagrams(capture.parse_pcap(data + bytes(7)), CALLERS, CONTACTS))


def test_null_loopback_frame_shorter_than_its_family_is_skipped():
    records_ = [(T0 - 1, b"\x02\x00"), *records(two_calls(), LINKTYPE_NULL)]
    data = pcap(records_, linktype=LINKTYPE_NULL)
    assert_two_calls(capture.analyse_datagrams(capture.parse_pcap(data), CALLERS, CONTACTS))


def test_empty_and_foreign_files(tmp_path):
    assert list(capture.parse_pcap(b"")) == []
    assert list(capture.parse_pcap(pcap([], linktype=LINKTYPE_ETHERNET))) == []
    pcapng = tmp_path / "x.pcapng"
    pcapng.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(60))
    with pytest.raises(capture.CaptureError, match="pcapng"):
        list(capture.read_pcap(pcapng))
    result = capture.analyse_datagrams([], CALLERS, CONTACTS)
    assert result["completeness"]["calls"] == 0
    assert all(s["n"] == 0 for s in result["summary"].values())
