"""The whole benchmark run and the smoke run, driven by the CLI's options."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from . import experiments, install, proxies, sipp
from .layout import OUT_DIR, REPO_DIR, Endpoint, Layout

DEFAULT_RATES = [100, 200, 400, 800, 1200, 1600, 2000, 2400, 2800, 3200, 4000]
QUICK_RATES = [100, 200, 400, 800, 1200, 1600, 2000, 2400]
PROXY_NAMES = ("sipfork", "kamailio")
PARTS = ("latency", "throughput", "memory", "micro")


@dataclass
class Options:
    proxies: list[str] = field(default_factory=lambda: list(PROXY_NAMES))
    parts: list[str] = field(default_factory=lambda: list(PARTS))
    rates: list[float] = field(default_factory=lambda: list(DEFAULT_RATES))
    step_s: float = 20.0
    latency_runs: int = 3
    latency_calls: int = 200
    latency_rate: float = 10.0
    memory_counts: list[int] = field(default_factory=lambda: [10_000, 100_000])
    memory_budget_s: float = 240.0
    register_rate: float = 20000.0
    register_limit: int = 50
    memory_settle_s: float = 35.0
    sipfork_data_dir: Path | None = None
    micro_max_time: float = 0.5
    sipfork_workers: int | None = None
    install: bool = True
    out: Path | None = None
    write_report: bool = True
    quick: bool = False
    command: str = ""


def log(msg: str) -> None:
    print(msg, flush=True)


def machine_info() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: %.2f, %.2f, %.2f" % os.getloadavg()


def make_proxy(name: str, workdir: Path, layout: Layout, opts: Options, users=None) -> proxies.Proxy:
    port = layout.ports[name]
    if name == "kamailio":
        return proxies.kamailio(workdir, port)
    data_dir = None
    if opts.sipfork_data_dir is not None:
        data_dir = opts.sipfork_data_dir / workdir.name
        data_dir.mkdir(parents=True, exist_ok=True)
    return proxies.sipfork(
        workdir, port, trusted_host=layout.trusted_host, users=users,
        workers=opts.sipfork_workers, data_dir=data_dir,
    )


LOCK_FILE = Path("/tmp/sipfork-benchmark-harness.lock")


def run_benchmark(opts: Options) -> dict:
    """The full (or --quick) run, one at a time on this machine (the ports
    are fixed); returns the results and writes them to JSON."""
    with LOCK_FILE.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another benchmark run holds {LOCK_FILE}; waiting for it (at most 30 minutes)")
            deadline = time.monotonic() + 1800
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise experiments.BenchError(f"{LOCK_FILE} still held after 30 minutes") from None
                    time.sleep(2)
        return _run_benchmark(opts)


def _ports_in_use(layout: Layout, names: list[str], parts: list[str]) -> list[str]:
    busy = []
    endpoints = layout.sipp_endpoints if {"latency", "throughput"} & set(parts) else ()
    if "memory" in parts:
        endpoints += (layout.registrar_client,)
    for ep in endpoints:
        if not _udp_port_free(ep.host, ep.port):
            busy.append(f"{ep.host}:{ep.port} (SIPp)")
    for name in names:
        if not _udp_port_free("127.0.0.1", layout.ports[name]):
            busy.append(f"127.0.0.1:{layout.ports[name]} ({name})")
    return busy


def _run_benchmark(opts: Options) -> dict:
    layout = Layout()
    busy = _ports_in_use(layout, opts.proxies, opts.parts)
    if busy:
        raise experiments.BenchError(
            "UDP ports the benchmark needs are in use (another proxy or benchmark running?): " + ", ".join(busy)
        )
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = opts.out or (OUT_DIR / stamp)
    out.mkdir(parents=True, exist_ok=True)

    needed = ["sipp"]
    if "kamailio" in opts.proxies:
        needed.append("kamailio")
    if "latency" in opts.parts:
        needed.append("dumpcap")
    modules = ["matplotlib"] if opts.write_report else []
    if "micro" in opts.parts:
        modules.append("pytest_benchmark")
    if opts.install:
        install.ensure_programs(needed, log=log)
        install.ensure_python_packages(modules, log=log)

    results: dict = {
        "meta": {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": opts.command,
            "machine": machine_info(),
            "uptime_before": uptime(),
            "versions": {
                "sipp": sipp.sipp_version(),
                "kamailio": proxies.kamailio_version() if "kamailio" in opts.proxies else None,
                "sipfork": proxies.sipfork_version(),
                "git": proxies.git_revision(),
            },
            "options": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in opts.__dict__.items()
                if k not in ("command",)
            },
            "out_dir": str(out),
        },
        "proxies": {},
    }
    log(f"benchmark output in {out}")
    log(f"machine: {results['meta']['machine']['nproc']} cores, {results['meta']['machine']['cpu']}")
    log(f"uptime: {results['meta']['uptime_before']}")

    # Kamailio first: it is the reference, and if sipfork fails the
    # reference numbers are still there.
    order = [p for p in ("kamailio", "sipfork") if p in opts.proxies]
    for name in order:
        results["proxies"][name] = run_proxy(name, layout, out / name, opts)
        _save(out, results)

    if "micro" in opts.parts:
        results["micro"] = run_micro(out, opts)

    results["meta"]["uptime_after"] = uptime()
    path = _save(out, results)
    log(f"results: {path}")
    if opts.write_report:
        from . import report

        md = report.write(results)
        log(f"report: {md}")
    return results


def _save(out: Path, results: dict) -> Path:
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=1))
    return path


def run_proxy(name: str, layout: Layout, workdir: Path, opts: Options) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    # the working tree is shared and sipfork is installed editable: note the
    # revision each proxy's measurements ran with
    res: dict = {"uptime_before": uptime(), "git": proxies.git_revision()}
    calls_parts = [p for p in ("latency", "throughput") if p in opts.parts]
    if calls_parts:
        proxy = make_proxy(name, workdir / "calls", layout, opts)
        log(f"{name}: starting")
        try:
            proxy.start()
        except proxies.ProxyError as e:
            res["error"] = str(e)
            log(f"{name}: could not start: {e}")
            return res
        try:
            experiments.register_contacts(proxy, layout, workdir / "calls", log)
            if "latency" in opts.parts:
                res["latency"] = experiments.latency(
                    proxy, layout, workdir / "calls", runs=opts.latency_runs,
                    calls=opts.latency_calls, rate=opts.latency_rate, log=log,
                )  # fmt: skip
            if "throughput" in opts.parts:
                steps = experiments.throughput(
                    proxy, layout, workdir / "calls", rates=opts.rates, step_s=opts.step_s, log=log
                )
                res["throughput"] = steps
                res["max_clean_rate"] = experiments.max_clean_rate(steps)
                log(f"{name}: highest clean rate {res['max_clean_rate']} calls/s")
        except experiments.BenchError as e:
            res["error"] = str(e)
            log(f"{name}: {e}")
        finally:
            res["proxy_alive_at_end"] = proxy.alive()
            res["log_tail"] = proxy.log_tail(2000)
            proxy.stop()
    if "memory" in opts.parts:
        log(f"{name}: memory with {', '.join(str(c) for c in opts.memory_counts)} contacts")
        try:
            res["memory"] = experiments.memory(
                lambda users: make_proxy(name, workdir / "memory", layout, opts, users=users),
                layout, workdir / "memory", counts=opts.memory_counts,
                rate=opts.register_rate, limit=opts.register_limit,
                time_budget_s=opts.memory_budget_s, settle_s=opts.memory_settle_s, log=log,
            )  # fmt: skip
        except (proxies.ProxyError, experiments.BenchError) as e:
            res["memory"] = {"error": str(e)}
            log(f"{name}: memory test failed: {e}")
    res["uptime_after"] = uptime()
    return res


def run_micro(out: Path, opts: Options) -> dict:
    """pytest-benchmark on benchmarks/test_micro.py (the pure layers, no sockets)."""
    json_path = out / "micro.json"
    cmd = [
        sys.executable, "-m", "pytest", str(REPO_DIR / "benchmarks" / "test_micro.py"),
        "-q", "-p", "no:cacheprovider", "-o", "addopts=",
        f"--benchmark-json={json_path}",
        f"--benchmark-max-time={opts.micro_max_time}",
        "--benchmark-min-rounds=20",
        "--benchmark-warmup=on",
    ]  # fmt: skip
    log("micro-benchmarks: " + shlex.join(cmd[2:5]))
    proc = subprocess.run(cmd, cwd=REPO_DIR, capture_output=True, text=True, timeout=600)
    result: dict = {"exit": proc.returncode, "output_tail": proc.stdout[-3000:] + proc.stderr[-1000:]}
    if json_path.exists():
        data = json.loads(json_path.read_text())
        result["benchmarks"] = [
            {
                "name": b["name"],
                "median_us": b["stats"]["median"] * 1e6,
                "mean_us": b["stats"]["mean"] * 1e6,
                "min_us": b["stats"]["min"] * 1e6,
                "ops": b["stats"]["ops"],
                "rounds": b["stats"]["rounds"],
            }
            for b in data.get("benchmarks", [])
        ]
        for b in result["benchmarks"]:
            log(f"  {b['name']}: median {b['median_us']:.1f} us")
    else:
        log(f"  micro-benchmarks did not run:\n{result['output_tail'][-1500:]}")
    return result


# --- smoke ---------------------------------------------------------------------


def _udp_port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_layout(seed: int | None = None) -> Layout:
    """A layout on ports nobody uses right now (the smoke test may run while
    other tests or a developer's proxy hold 5060)."""
    rnd = random.Random(seed)
    used: set[int] = set()

    def pick(host: str, span: tuple[int, ...] = (0,)) -> int:
        for _ in range(200):
            base = rnd.randrange(20000, 60000, 10)
            if base in used:
                continue
            if all(_udp_port_free(host, base + d) for d in span):
                used.add(base)
                return base
        raise experiments.BenchError("no free UDP ports for the smoke run")

    def endpoint(host: str) -> Endpoint:
        return Endpoint(host, pick(host), pick(host, (0, 2)), pick(host))

    return Layout(
        caller=endpoint("127.0.0.1"),
        answerer=endpoint("127.0.0.2"),
        ringers=(endpoint("127.0.0.3"), endpoint("127.0.0.4")),
        registrar_client=endpoint("127.0.0.5"),
        ports={"sipfork": pick("127.0.0.1"), "kamailio": pick("127.0.0.1")},
    )


def run_smoke(*, calls: int = 20, rate: float = 10.0, proxy_name: str = "sipfork", workdir: Path | None = None) -> dict:
    """Register 3 SIPp contacts with sipfork and place `calls` calls through it.
    Returns a summary with "ok" true when every call succeeded."""
    if install.missing_programs(["sipp"]):
        raise experiments.BenchError("sipp is not installed (Debian package sip-tester; `make test` installs it)")
    layout = free_layout()
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="sipfork-smoke-")
        workdir = Path(tmp.name)
    t0 = time.monotonic()
    proxy = make_proxy(proxy_name, workdir, layout, Options())
    summary: dict = {"proxy": proxy_name, "calls": calls, "rate": rate, "workdir": str(workdir)}
    try:
        proxy.start(ready_timeout=20)
        batch = experiments.smoke(proxy, layout, workdir, calls=calls, rate=rate, log=log)
        summary.update(batch)
        summary["ok"] = (
            batch["completed"] == calls and batch["failed"] == 0 and proxy.alive()
        )
    except (experiments.BenchError, proxies.ProxyError) as e:
        summary["ok"] = False
        summary["error"] = str(e)
    finally:
        summary["proxy_log_tail"] = proxy.log_tail(1500)
        proxy.stop()
        summary["seconds"] = round(time.monotonic() - t0, 1)
        if tmp is not None and summary.get("ok"):
            tmp.cleanup()
    return summary


def print_smoke(summary: dict) -> None:
    if summary.get("error"):
        log(f"smoke: FAILED: {summary['error']}")
    else:
        log(
            f"smoke: {summary['proxy']}: {summary['completed']}/{summary['calls']} calls completed, "
            f"{summary['failed']} failed, {summary['retransmissions']} retransmissions, "
            f"proxy CPU {summary['proxy_cpu_s']:.2f} s, {summary['seconds']} s in all"
        )
        for e in summary.get("first_errors", [])[:3]:
            log("  " + e.replace("\n", "\n    ")[:1200])
    if not summary.get("ok"):
        log(f"  files kept in {summary['workdir']}")
        if summary.get("proxy_log_tail"):
            log("  proxy log (tail):\n    " + summary["proxy_log_tail"].replace("\n", "\n    "))
    log("smoke: OK" if summary.get("ok") else "smoke: NOT OK")


def quick(opts: Options) -> Options:
    return replace(
        opts,
        rates=list(QUICK_RATES),
        step_s=5.0,
        latency_runs=1,
        latency_calls=100,
        memory_counts=[10_000],
        memory_budget_s=90.0,
        micro_max_time=0.2,
        quick=True,
    )
