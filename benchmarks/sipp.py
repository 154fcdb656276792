"""SIPp: command lines for the scenarios, process control, statistics.

Every SIPp process writes its cumulative statistics once a second and on exit
(-trace_stat, -fd 1), its error log (-trace_err) and its final screen
(-trace_screen) into the run directory. Every process has a global -timeout,
so nothing outlives the harness for long even if the harness dies.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .install import program_path
from .layout import DOMAIN, SCENARIOS, USER, Endpoint

# milliseconds; a scenario step that waits longer for its message fails the call
RECV_TIMEOUT_MS = 8000
SOCKET_BUFFER = 4 * 1024 * 1024


@dataclass
class SippStats:
    """The cumulative counters of one SIPp process (its last stat line)."""

    created: int = 0
    successful: int = 0
    failed: int = 0
    current: int = 0
    retransmissions: int = 0
    unexpected: int = 0
    recv_timeouts: int = 0
    max_udp_retrans: int = 0
    dead_call_msgs: int = 0
    out_of_call_msgs: int = 0
    watchdog_major: int = 0
    watchdog_minor: int = 0
    elapsed_s: float = 0.0
    failed_by_cause: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_csv(cls, path: Path) -> "SippStats":
        if not path.exists():
            return cls()
        with path.open(newline="") as f:
            rows = [r for r in csv.reader(f, delimiter=";") if r]
        if len(rows) < 2:
            return cls()
        header, last = rows[0], rows[-1]
        values = dict(zip(header, last))

        def num(name: str) -> int:
            try:
                return int(float(values.get(name, "0") or 0))
            except ValueError:
                return 0

        causes = {
            name[len("Failed") : -len("(C)")]: num(name)
            for name in header
            if name.startswith("Failed") and name.endswith("(C)") and name != "FailedCall(C)"
        }
        return cls(
            created=num("TotalCallCreated"),
            successful=num("SuccessfulCall(C)"),
            failed=num("FailedCall(C)"),
            current=num("CurrentCall"),
            retransmissions=num("Retransmissions(C)"),
            unexpected=num("FailedUnexpectedMessage(C)"),
            recv_timeouts=num("FailedTimeoutOnRecv(C)"),
            max_udp_retrans=num("FailedMaxUDPRetrans(C)"),
            dead_call_msgs=num("DeadCallMsgs(C)"),
            out_of_call_msgs=num("OutOfCallMsgs(C)"),
            watchdog_major=num("WatchdogMajor(C)"),
            watchdog_minor=num("WatchdogMinor(C)"),
            elapsed_s=_span(values.get("StartTime", ""), values.get("CurrentTime", ""))
            or _elapsed(values.get("ElapsedTime(C)", "")),
            failed_by_cause={k: v for k, v in causes.items() if v},
        )


def _span(start: str, end: str) -> float:
    """Seconds between two SIPp time stamps ("date\ttime\tepoch")."""
    try:
        return float(end.split("\t")[-1]) - float(start.split("\t")[-1])
    except ValueError:
        return 0.0


def _elapsed(text: str) -> float:
    """SIPp writes durations as HH:MM:SS:micro (or HH:MM:SS.micro)."""
    parts = re.split(r"[:.]", text.strip())
    if len(parts) != 4:
        return 0.0
    try:
        h, m, s, us = (int(p) for p in parts)
    except ValueError:
        return 0.0
    return h * 3600 + m * 60 + s + us / 1e6


# SIPp writes events back to back, not always with a line break between them
_EVENT = re.compile(r"\d{4}-\d\d-\d\d\t[\d:.]+\t\d+\.\d+: ")


def error_events(path: Path, limit: int = 5) -> tuple[int, list[str]]:
    """How many events SIPp logged in its error file, and the first few (shortened)."""
    if not path.exists():
        return 0, []
    text = path.read_text(errors="replace")
    starts = [m.start() for m in _EVENT.finditer(text)]
    events = []
    for i, start in enumerate(starts[:limit]):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        events.append(text[start:end].strip()[:900])
    return len(starts), events


class SippProcess:
    """One running SIPp process and its files."""

    def __init__(self, name: str, args: list[str], workdir: Path, *, timeout_s: float):
        self.name = name
        self.workdir = workdir
        self.stat_file = workdir / f"{name}.stat.csv"
        self.error_file = workdir / f"{name}.errors.log"
        self.screen_file = workdir / f"{name}.screen.log"
        self.stderr_file = workdir / f"{name}.stderr.log"
        for f in (self.stat_file, self.error_file, self.screen_file):
            f.unlink(missing_ok=True)
        self.cmd = [
            program_path("sipp"),
            *args,
            "-nostdin",
            "-trace_stat", "-stf", str(self.stat_file), "-fd", "1",
            "-trace_err", "-error_file", str(self.error_file),
            "-trace_screen", "-screen_file", str(self.screen_file),
            "-timeout", f"{max(1, int(timeout_s))}s",
        ]  # fmt: skip
        self._stderr = self.stderr_file.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        self.ended: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> bool:
        """Wait up to timeout seconds for the process to end by itself."""
        try:
            self.proc.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return False
        self._ended()
        return True

    def stop(self, grace: float = 3.0) -> None:
        """Soft exit (SIGUSR1, like the q key), then SIGTERM, then SIGKILL."""
        for sig, wait in ((signal.SIGUSR1, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            if not self.running():
                break
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                break
            if self.wait(wait):
                break
        self._ended()

    def _ended(self) -> None:
        if self.ended is None and self.proc.returncode is not None:
            self.ended = time.monotonic()
            self._stderr.close()

    @property
    def wall_s(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def stats(self) -> SippStats:
        return SippStats.from_csv(self.stat_file)

    def errors(self, limit: int = 5) -> tuple[int, list[str]]:
        return error_events(self.error_file, limit)

    def stderr_text(self) -> str:
        try:
            return self.stderr_file.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def endpoint_args(ep: Endpoint) -> list[str]:
    return [
        "-i", ep.host, "-p", str(ep.port), "-bind_local",
        "-mp", str(ep.media_port), "-cp", str(ep.control_port),
        "-t", "u1",
        # SIPp's default 64 KB socket buffers drop datagrams in bursts
        "-buff_size", str(SOCKET_BUFFER),
    ]  # fmt: skip


def caller_args(
    ep: Endpoint,
    proxy: tuple[str, int],
    *,
    rate: float,
    calls: int,
    index: int = 0,
    user: str = USER,
    domain: str = DOMAIN,
) -> list[str]:
    """The UAC number `index`: `calls` calls at `rate` calls/s. SIPp's default
    cap on simultaneous calls would quietly slow the offered load: allow 10 s
    worth. Its Call-IDs name the caller (SIPp's default has only the call
    number, pid and address), so they differ between callers whatever the pids."""
    limit = max(100, min(15000, int(rate * 10)))
    return [
        f"{proxy[0]}:{proxy[1]}",
        "-sf", str(SCENARIOS / "uac_invite.xml"),
        "-s", user, "-key", "domain", domain,
        "-r", f"{rate:g}", "-rp", "1000", "-m", str(calls), "-l", str(limit),
        "-cid_str", f"%u-%p-c{index}@%s",
        "-recv_timeout", str(RECV_TIMEOUT_MS),
        *endpoint_args(ep),
    ]  # fmt: skip


def contact_args(ep: Endpoint, *, answers: bool, calls: int) -> list[str]:
    """A registered contact: answers 50 ms after its 180, or rings until CANCEL."""
    scenario = "uas_answer.xml" if answers else "uas_ring.xml"
    return [
        "-sf", str(SCENARIOS / scenario),
        "-m", str(calls),
        "-recv_timeout", str(RECV_TIMEOUT_MS),
        *endpoint_args(ep),
    ]  # fmt: skip


def register_args(
    ep: Endpoint,
    proxy: tuple[str, int],
    injection: Path,
    *,
    count: int,
    rate: float,
    limit: int,
    domain: str = DOMAIN,
    expires: int = 3600,
) -> list[str]:
    return [
        f"{proxy[0]}:{proxy[1]}",
        "-sf", str(SCENARIOS / "register.xml"),
        "-inf", str(injection),
        "-key", "domain", domain, "-key", "expires", str(expires),
        "-auth_uri", domain,
        "-r", f"{rate:g}", "-rp", "1000", "-m", str(count), "-l", str(limit),
        "-recv_timeout", str(RECV_TIMEOUT_MS),
        *endpoint_args(ep),
    ]  # fmt: skip


def write_injection(path: Path, rows: list[tuple[str, str, int, str]]) -> Path:
    """user;contact host;contact port;[authentication ...] per line."""
    with path.open("w") as f:
        f.write("SEQUENTIAL\n")
        for user, host, port, password in rows:
            f.write(f"{user};{host};{port};[authentication username={user} password={password}]\n")
    return path


def sipp_version() -> str:
    try:
        out = subprocess.run(
            [program_path("sipp"), "-v"], capture_output=True, timeout=10, text=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    m = re.search(r"SIPp v?([\w.\-]+)", out)
    return m.group(1) if m else out.strip()[:40]


def udp_counters() -> dict[str, int]:
    """The kernel's UDP counters (all sockets of the machine): datagrams in,
    and those dropped because a socket's receive buffer was full."""
    try:
        lines = [l.split() for l in Path("/proc/net/snmp").read_text().splitlines() if l.startswith("Udp:")]
        values = dict(zip(lines[0][1:], (int(v) for v in lines[1][1:])))
    except (OSError, IndexError, ValueError):
        return {}
    return {"in": values.get("InDatagrams", 0), "rcvbuf_errors": values.get("RcvbufErrors", 0)}


def sipp_cpu_children() -> float:
    """CPU seconds of this harness's waited-for children (SIPp processes)."""
    ru = os.times()
    return ru.children_user + ru.children_system
