"""Packet capture on loopback and fork latency from it.

dumpcap writes every UDP datagram to or from the SIPp processes (so every
datagram the proxy receives or sends, whatever source port its workers use)
into a classic pcap file; a small pure-Python reader gets the datagrams back
and the matching below pairs them by Call-ID and Via branch:

- INVITE in: a caller's INVITE (its top Via branch b).
- forked INVITE out: an INVITE to a contact whose second Via has branch b;
  each contact's first copy counts (retransmissions ignored).
- 200 in: a contact's first 200 to the INVITE (CSeq method INVITE).
- CANCEL out: a CANCEL to a contact whose Via branch is the branch of a
  forked INVITE of that call.
- 200 relayed: the first 200 to the INVITE that reaches a caller.

Loopback timestamps are taken as the sender hands the datagram to the kernel,
so "in" is when SIPp sent it and "out" when the proxy sent it: the latency
includes the proxy's wake-up, parsing, routing and sending.
"""

from __future__ import annotations

import math
import os
import signal
import struct
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .install import program_path
from .layout import Endpoint

# --- capture ----------------------------------------------------------------


class CaptureError(RuntimeError):
    pass


def capture_filter(endpoints: tuple[Endpoint, ...]) -> str:
    hosts = " or ".join(f"(host {ep.host} and port {ep.port})" for ep in endpoints)
    return f"udp and ({hosts})"


class Capture:
    """dumpcap on lo, writing a pcap file; start() waits until it is capturing."""

    def __init__(self, path: Path, bpf: str):
        self.path = path
        self.bpf = bpf
        self.proc: subprocess.Popen | None = None
        self.log = path.with_suffix(".dumpcap.log")
        self.stats_text = ""

    def start(self, timeout: float = 10.0) -> None:
        self.path.unlink(missing_ok=True)
        log = self.log.open("wb")
        self.proc = subprocess.Popen(
            [
                program_path("dumpcap"),
                "-i", "lo", "-f", self.bpf, "-w", str(self.path),
                "-P", "-B", "64", "-s", "65535",
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CaptureError(f"dumpcap exited: {self.log.read_text(errors='replace')}")
            if b"Capturing on" in self.log.read_bytes() and self.path.exists():
                time.sleep(0.3)
                return
            time.sleep(0.05)
        self.stop()
        raise CaptureError("dumpcap did not start capturing")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            time.sleep(0.3)  # let the last datagrams through
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.stats_text = self.log.read_text(errors="replace")

    def dropped(self) -> int | None:
        """Packets dumpcap reports dropped (None when it did not say)."""
        import re

        m = re.search(r"Packets received/dropped on interface 'lo': (\d+)/(\d+)", self.stats_text)
        return int(m.group(2)) if m else None


# --- pcap reader --------------------------------------------------------------


@dataclass(frozen=True)
class Datagram:
    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


def read_pcap(path: Path) -> Iterator[Datagram]:
    """IPv4/UDP datagrams of a classic pcap file (see parse_pcap)."""
    try:
        yield from parse_pcap(path.read_bytes())
    except CaptureError as e:
        raise CaptureError(f"{path}: {e}") from None


def parse_pcap(data: bytes) -> Iterator[Datagram]:
    """IPv4/UDP datagrams of a classic pcap file's bytes (Ethernet, Linux
    cooked, raw IP or BSD loopback). Frames that are not IPv4/UDP, IP
    fragments and frames cut short are skipped; a last record cut short
    (dumpcap stopped while writing) ends the file."""
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise CaptureError("not a classic pcap file (pcapng? use dumpcap -P)")
    nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    record = struct.Struct(endian + "IIII")
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, _orig = record.unpack_from(data, pos)
        pos += 16
        if pos + incl > len(data):
            break
        frame = data[pos : pos + incl]
        pos += incl
        ip = _ip_payload(frame, linktype, endian)
        if ip is None or len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        flags_frag = struct.unpack("!H", ip[6:8])[0]
        if flags_frag & 0x3FFF:  # fragments: SIP over loopback never needs them
            continue
        total = struct.unpack("!H", ip[2:4])[0]
        if ihl < 20 or total > len(ip):
            continue
        udp = ip[ihl:total]
        if len(udp) < 8:
            continue
        sport, dport, ulen = struct.unpack("!HHH", udp[:6])
        if not 8 <= ulen <= len(udp):
            continue
        src = ".".join(str(b) for b in ip[12:16])
        dst = ".".join(str(b) for b in ip[16:20])
        yield Datagram(
            time=sec + frac / (1e9 if nanos else 1e6),
            src=(src, sport),
            dst=(dst, dport),
            payload=bytes(udp[8:ulen]),
        )


def _ip_payload(frame: bytes, linktype: int, endian: str) -> bytes | None:
    if linktype == 1:  # Ethernet
        if len(frame) < 14:
            return None
        ethertype = struct.unpack("!H", frame[12:14])[0]
        offset = 14
        while ethertype == 0x8100 and len(frame) >= offset + 4:  # VLAN
            ethertype = struct.unpack("!H", frame[offset + 2 : offset + 4])[0]
            offset += 4
        return frame[offset:] if ethertype == 0x0800 else None
    if linktype == 113:  # Linux cooked v1
        return frame[16:] if frame[14:16] == b"\x08\x00" else None
    if linktype == 276:  # Linux cooked v2
        return frame[20:] if frame[0:2] == b"\x08\x00" else None
    if linktype in (0, 108):  # BSD loopback
        if len(frame) < 4:
            return None
        family = struct.unpack(endian + "I" if linktype == 0 else "!I", frame[:4])[0]
        return frame[4:] if family == 2 else None
    if linktype in (101, 228, 12):  # raw IP
        return frame
    return None


# --- minimal SIP reading ------------------------------------------------------

_COMPACT = {b"i": b"call-id", b"v": b"via"}


@dataclass
class SipSummary:
    method: str | None  # a request's method, or None for a response
    status: int | None
    call_id: str
    cseq_method: str
    branches: list[str]  # Via branch parameters, top first


def summarize_sip(payload: bytes) -> SipSummary | None:
    head = payload.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    if not lines:
        return None
    first = lines[0].split(b" ")
    method = status = None
    if first[0] == b"SIP/2.0" and len(first) > 1 and first[1].isdigit():
        status = int(first[1])
    elif len(first) >= 3 and first[-1] == b"SIP/2.0":
        method = first[0].decode(errors="replace")
    else:
        return None
    call_id = cseq_method = ""
    branches: list[str] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        if key == b"call-id":
            call_id = value.strip().decode(errors="replace")
        elif key == b"cseq":
            parts = value.split()
            cseq_method = parts[-1].decode(errors="replace") if parts else ""
        elif key == b"via":
            for via in value.split(b","):
                branches.append(_branch(via))
    if not call_id:
        return None
    return SipSummary(method, status, call_id, cseq_method, branches)


def _branch(via: bytes) -> str:
    for param in via.split(b";")[1:]:
        name, _, value = param.partition(b"=")
        if name.strip().lower() == b"branch":
            return value.strip().decode(errors="replace")
    return ""


# --- latency matching ---------------------------------------------------------


@dataclass
class CallTimes:
    invite_in: float | None = None
    caller_branch: str = ""
    branch_out: dict[str, float] = field(default_factory=dict)  # proxy branch -> first send time
    branch_dest: dict[str, tuple[str, int]] = field(default_factory=dict)
    ok_in: float | None = None
    cancel_out: dict[str, float] = field(default_factory=dict)  # proxy branch -> first CANCEL time
    ok_out: float | None = None


METRICS = {
    "invite_first_branch": "INVITE in -> first forked INVITE out",
    "invite_last_branch": "INVITE in -> last forked INVITE out",
    "ok_first_cancel": "200 in -> first CANCEL out",
    "ok_last_cancel": "200 in -> last CANCEL out",
    "ok_relay": "200 in -> 200 out to the caller",
}


def match_calls(
    datagrams: Iterable[Datagram], callers: set[tuple[str, int]], contacts: set[tuple[str, int]]
) -> dict[str, CallTimes]:
    """Each call's times (by Call-ID) from datagrams in capture order; calls
    whose INVITE from a caller is not there are left out."""
    calls: dict[str, CallTimes] = {}
    for d in datagrams:
        sip = summarize_sip(d.payload)
        if sip is None:
            continue
        call = calls.setdefault(sip.call_id, CallTimes())
        if d.src in callers and sip.method == "INVITE":
            if call.invite_in is None:
                call.invite_in = d.time
                call.caller_branch = sip.branches[0] if sip.branches else ""
        elif d.dst in contacts and sip.method == "INVITE":
            if len(sip.branches) >= 2 and sip.branches[1] == call.caller_branch:
                top = sip.branches[0]
                if top not in call.branch_out:
                    call.branch_out[top] = d.time
                    call.branch_dest[top] = d.dst
        elif d.dst in contacts and sip.method == "CANCEL":
            top = sip.branches[0] if sip.branches else ""
            if top in call.branch_out and top not in call.cancel_out:
                call.cancel_out[top] = d.time
        elif d.src in contacts and sip.status == 200 and sip.cseq_method == "INVITE":
            if call.ok_in is None:
                call.ok_in = d.time
        elif d.dst in callers and sip.status == 200 and sip.cseq_method == "INVITE":
            if call.ok_out is None:
                call.ok_out = d.time
    return {cid: c for cid, c in calls.items() if c.invite_in is not None}


def latencies_us(calls: dict[str, CallTimes]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in METRICS}
    for c in calls.values():
        if c.invite_in is None:
            continue
        if c.branch_out:
            out["invite_first_branch"].append((min(c.branch_out.values()) - c.invite_in) * 1e6)
            out["invite_last_branch"].append((max(c.branch_out.values()) - c.invite_in) * 1e6)
        if c.ok_in is not None and c.cancel_out:
            out["ok_first_cancel"].append((min(c.cancel_out.values()) - c.ok_in) * 1e6)
            out["ok_last_cancel"].append((max(c.cancel_out.values()) - c.ok_in) * 1e6)
        if c.ok_in is not None and c.ok_out is not None:
            out["ok_relay"].append((c.ok_out - c.ok_in) * 1e6)
    return out


def completeness(calls: dict[str, CallTimes], branches: int) -> dict[str, int]:
    return {
        "calls": len(calls),
        f"calls_with_{branches}_branches": sum(len(c.branch_out) == branches for c in calls.values()),
        f"calls_with_{branches - 1}_cancels": sum(
            len(c.cancel_out) == branches - 1 for c in calls.values()
        ),
        "calls_answered_to_caller": sum(c.ok_out is not None for c in calls.values()),
    }


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {
        "n": len(s),
        "p50": percentile(s, 50),
        "p90": percentile(s, 90),
        "p99": percentile(s, 99),
        "max": s[-1] if s else math.nan,
    }


def analyse(path: Path, callers: tuple[Endpoint, ...], contacts: tuple[Endpoint, ...]) -> dict:
    result = analyse_datagrams(read_pcap(path), callers, contacts)
    result["pcap_bytes"] = os.path.getsize(path) if path.exists() else 0
    return result


def analyse_datagrams(
    datagrams: Iterable[Datagram], callers: tuple[Endpoint, ...], contacts: tuple[Endpoint, ...]
) -> dict:
    """Completeness, percentiles and samples (µs) of one capture's calls."""
    calls = match_calls(datagrams, {c.address for c in callers}, {c.address for c in contacts})
    lat = latencies_us(calls)
    return {
        "completeness": completeness(calls, len(contacts)),
        "summary": {name: summary(v) for name, v in lat.items()},
        "samples": {name: [round(x, 1) for x in v] for name, v in lat.items()},
    }
