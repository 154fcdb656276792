"""Start and stop the proxies under test; their CPU time and memory from /proc.

sipfork runs as `sipfork run -c FILE` with a config written here; Kamailio
as `kamailio -f benchmarks/kamailio.cfg -m 512 -M 16 -DD -E`. Both are ready
when they answer an OPTIONS with 200. CPU time and memory are summed over the
proxy's whole process tree (Kamailio forks its workers; sipfork may run
several workers).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .install import program_path
from .layout import DOMAIN, KAMAILIO_CFG, PASSWORD, USER, venv_bin

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class ProxyError(RuntimeError):
    pass


@dataclass(frozen=True)
class ProcessCpu:
    """utime + stime of one of the proxy's processes so far, and what it is:
    "main" (the process the harness started), "worker" (a sipfork worker,
    started by multiprocessing's spawn), "tracker" (multiprocessing's
    resource tracker), else the command name (Kamailio's processes); and its
    context switches so far: voluntary (it waited for something) and
    involuntary (the kernel ran another task in its place, typically a SIPp
    process that one of its datagrams woke on the same core)."""

    pid: int
    role: str
    cpu_s: float
    voluntary: int = 0
    involuntary: int = 0


@dataclass
class Memory:
    rss_main_kib: int
    rss_sum_kib: int
    pss_sum_kib: int
    processes: int


class Proxy:
    """A proxy process tree under test."""

    name: str

    def __init__(self, name: str, cmd: list[str], port: int, workdir: Path, host: str = "127.0.0.1"):
        self.name = name
        self.cmd = cmd
        self.host = host
        self.port = port
        self.workdir = workdir
        self.log_file = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.start_s: float | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def start(self, ready_timeout: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            self.wait_ready(ready_timeout)
        except ProxyError:
            self.stop()
            raise
        self.start_s = time.monotonic() - t0

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ProxyError(
                    f"{self.name} exited with {self.proc.returncode} at start-up:\n{self.log_tail()}"
                )
            if options_ping(self.address, timeout=0.5):
                return
            time.sleep(0.2)
        raise ProxyError(f"{self.name} did not answer OPTIONS within {timeout:.0f} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            pids = self.pids()
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.wait(timeout=5)
        # children of the process group that outlived their parent
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _group_members(self.proc.pid):
            time.sleep(0.1)
        for pid in _group_members(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return process_tree(self.proc.pid)

    def cpu_seconds(self) -> float:
        """utime + stime of every live process of the proxy, in seconds."""
        return sum(p.cpu_s for p in self.cpu_by_process())

    def cpu_by_process(self) -> list[ProcessCpu]:
        """utime + stime of each live process of the proxy (main process first)."""
        out = []
        pids = self.pids()
        for i, pid in enumerate(pids[:1] + sorted(pids[1:])):
            stat = _stat_fields(pid)
            if stat:
                ticks = int(stat[11]) + int(stat[12])  # utime, stime (fields 14, 15)
                out.append(ProcessCpu(pid, "main" if i == 0 else _role(pid), ticks / CLK_TCK,
                                      voluntary=_status_value(pid, "voluntary_ctxt_switches"),
                                      involuntary=_status_value(pid, "nonvoluntary_ctxt_switches")))
        return out

    def udp_drops(self) -> int:
        """Datagrams the kernel dropped on the proxy's own UDP sockets (full
        receive buffer), from /proc/net/udp{,6}, since the sockets opened."""
        inodes = set()
        for pid in self.pids():
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        drops = 0
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            try:
                with open(table) as f:
                    next(f)
                    for line in f:
                        cols = line.split()
                        if len(cols) >= 13 and cols[9] in inodes:
                            drops += int(cols[12])
            except (OSError, StopIteration, ValueError):
                continue
        return drops

    def memory(self) -> Memory:
        pids = self.pids()
        rss = [_status_value(pid, "VmRSS") for pid in pids]
        pss = [_pss_kib(pid) for pid in pids]
        return Memory(
            rss_main_kib=rss[0] if rss else 0,
            rss_sum_kib=sum(rss),
            pss_sum_kib=sum(pss),
            processes=len(pids),
        )

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-limit:]
        except OSError:
            return ""


def process_tree(root: int) -> list[int]:
    """root and all its descendants (root first)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat_fields(int(entry))
        if stat:
            children.setdefault(int(stat[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _role(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return "?"
    if b"spawn_main" in cmdline:
        return "worker"
    if b"resource_tracker" in cmdline:
        return "tracker"
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() or "?"
    except OSError:
        return "?"


def _group_members(pgid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat_fields(int(entry))
            if stat and int(stat[2]) == pgid and stat[0] != "Z":
                out.append(int(entry))
    return out


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    return data[data.rfind(")") + 2 :].split()


def _status_value(pid: int, key: str) -> int:
    """A number from /proc/<pid>/status (kiB for the sizes); 0 if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def options_ping(address: tuple[str, int], timeout: float = 0.5) -> bool:
    """Send one OPTIONS; True when a 200 comes back."""
    branch = "z9hG4bK-bench-" + uuid.uuid4().hex[:12]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        lhost, lport = s.getsockname()
        msg = (
            f"OPTIONS sip:{address[0]}:{address[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {lhost}:{lport};branch={branch};rport\r\n"
            f"From: <sip:bench-probe@{lhost}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{address[0]}:{address[1]}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@{lhost}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        try:
            s.sendto(msg, address)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                data, _ = s.recvfrom(65535)
                if data.startswith(b"SIP/2.0 200") and branch.encode() in data:
                    return True
                if data.startswith(b"SIP/2.0 1"):
                    continue
                return False
        except OSError:
            return False
    return False


# --- the two proxies -------------------------------------------------------


def kamailio(workdir: Path, port: int) -> Proxy:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        program_path("kamailio"),
        "-f", str(KAMAILIO_CFG),
        "-m", "512", "-M", "16",
        "-DD", "-E",
        "-Y", str(workdir),
        "-A", f"BENCH_PORT={port}",
    ]  # fmt: skip
    return Proxy("kamailio", cmd, port, workdir)


def kamailio_version() -> str:
    try:
        out = subprocess.run(
            [program_path("kamailio"), "-v"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    first = out.splitlines()[0] if out else "?"
    return first.replace("version: ", "").strip()


def sipfork_config(
    *,
    port: int,
    data_dir: Path,
    trusted_host: str,
    users: list[str] | None = None,
    workers: int | None = None,
) -> str:
    """proxy.toml for the bench: one user (or many), MD5 digest for SIPp,
    and a gateway whose inbound_from is the caller's address (calls from it
    need no authentication)."""
    lines = [
        "[proxy]",
        f'domain = "{DOMAIN}"',
        f'listen = ["udp:127.0.0.1:{port}"]',
        f'data_dir = "{data_dir}"',
        'digest_algorithms = ["MD5"]',
    ]
    if workers is not None:
        lines.append(f"workers = {workers}")
    for name in users or [USER]:
        lines += [
            "",
            "[[user]]",
            f'name = "{name}"',
            f'password = "{PASSWORD}"',
            'digest_algorithms = ["MD5"]',
        ]
    lines += [
        "",
        "[[gateway]]",
        'name = "bench-caller"',
        'uri = "sip:127.0.0.1:5099"',
        f'inbound_from = ["{trusted_host}"]',
        "",
    ]
    return "\n".join(lines)


def sipfork(
    workdir: Path,
    port: int,
    *,
    trusted_host: str,
    users: list[str] | None = None,
    workers: int | None = None,
    data_dir: Path | None = None,
) -> Proxy:
    workdir.mkdir(parents=True, exist_ok=True)
    data = data_dir or (workdir / "data")
    data.mkdir(parents=True, exist_ok=True)
    if data.exists():
        for f in data.iterdir():
            if f.is_file():
                f.unlink()
    config = workdir / "proxy.toml"
    config.write_text(
        sipfork_config(
            port=port, data_dir=data, trusted_host=trusted_host, users=users, workers=workers
        )
    )
    cmd = [str(venv_bin("sipfork")), "run", "-c", str(config)]
    return Proxy("sipfork", cmd, port, workdir)


def sipfork_version() -> str:
    try:
        from importlib.metadata import version

        return version("sipfork")
    except Exception:  # noqa: BLE001 - any failure means "unknown"
        return "?"


def git_revision() -> str:
    try:
        from .layout import REPO_DIR

        out = subprocess.run(
            ["git", "-C", str(REPO_DIR), "describe", "--always", "--dirty", "--abbrev=7"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"
