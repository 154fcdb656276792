"""The whole benchmark run and the smoke run, driven by the CLI's options."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import random
import select
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from . import experiments, install, proxies, sipp
from .layout import OUT_DIR, REPO_DIR, Endpoint, Layout

DEFAULT_RATES = [100, 200, 400, 800, 1200, 1600, 2000, 2400, 2800, 3200, 4000]
QUICK_RATES = [100, 200, 400, 800, 1200, 1600, 2000, 2400]
PROXY_NAMES = ("sipfork", "kamailio")
PARTS = ("latency", "throughput", "memory", "micro")
# SIPp callers in the throughput steps: a proxy whose workers share its port
# through SO_REUSEPORT picks a worker by the sender's address and port, so
# one caller keeps every call on one worker; the harness picks the callers'
# ports so that they spread over the workers (see spread_callers, README.md)
DEFAULT_CALLERS = 2
DEFAULT_SIPFORK_WORKERS = [1, 2]


@dataclass
class Options:
    proxies: list[str] = field(default_factory=lambda: list(PROXY_NAMES))
    parts: list[str] = field(default_factory=lambda: list(PARTS))
    rates: list[float] = field(default_factory=lambda: list(DEFAULT_RATES))
    step_s: float = 20.0
    latency_runs: int = 5
    latency_calls: int = 200
    latency_rate: float = 10.0
    latency_callers: int = 1
    callers: int = DEFAULT_CALLERS
    memory_counts: list[int] = field(default_factory=lambda: [10_000, 100_000])
    memory_budget_s: float = 240.0
    register_rate: float = 20000.0
    register_limit: int = 50
    memory_settle_s: float = 35.0
    sipfork_data_dir: Path | None = None
    micro_max_time: float = 0.5
    # the throughput part measures sipfork once per entry; latency and
    # memory use the first
    sipfork_workers: list[int] = field(default_factory=lambda: list(DEFAULT_SIPFORK_WORKERS))
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
        # the interpreter sipfork runs on (the harness's venv): its build matters (README.md)
        "python_path": os.path.realpath(sys.executable),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: %.2f, %.2f, %.2f" % os.getloadavg()


def make_proxy(
    name: str, workdir: Path, layout: Layout, opts: Options, users=None, workers: int | None = None
) -> proxies.Proxy:
    """The proxy `name`; for sipfork, `workers` processes (None: the first of
    opts.sipfork_workers)."""
    port = layout.ports[name]
    if name == "kamailio":
        return proxies.kamailio(workdir, port)
    data_dir = None
    if opts.sipfork_data_dir is not None:
        data_dir = opts.sipfork_data_dir / workdir.name
        data_dir.mkdir(parents=True, exist_ok=True)
    if workers is None:
        workers = opts.sipfork_workers[0]
    return proxies.sipfork(
        workdir, port, trusted_host=layout.trusted_host, users=users,
        workers=workers, data_dir=data_dir,
    )  # fmt: skip


def series_label(name: str, workers: int | None) -> str:
    """`sipfork`, `sipfork ×2`, `kamailio`: how the report names a throughput run."""
    return name if not workers or workers == 1 else f"{name} ×{workers}"


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


def _ports_in_use(layout: Layout, names: list[str], parts: list[str], callers: int = 1) -> list[str]:
    busy = []
    endpoints = layout.sipp_endpoints(callers) if {"latency", "throughput"} & set(parts) else ()
    if "memory" in parts:
        endpoints += (layout.registrar_client,)
    for ep in endpoints:
        if not _udp_port_free(ep.host, ep.port):
            busy.append(f"{ep.host}:{ep.port} (SIPp)")
    for name in names:
        if not _udp_port_free("127.0.0.1", layout.ports[name]):
            busy.append(f"127.0.0.1:{layout.ports[name]} ({name})")
    return busy


def reuseport_sockets(
    host: str, port: int, sources: Sequence[tuple[str, int]], group: int, timeout: float = 0.2
) -> list[int | None]:
    """Which of `group` sockets sharing (host, port) through SO_REUSEPORT the
    kernel gives each source's datagrams to (None: that source port could not
    be bound). The kernel picks by a hash of the source and destination
    addresses and ports (its key is random per boot), modulo the sockets in
    the group: bound the same way, a proxy's `group` workers get the same
    split. Binds (host, port) for a moment: run it before the proxy starts."""
    group_socks: list[socket.socket] = []
    try:
        for _ in range(group):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            group_socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.setblocking(False)
        out: list[int | None] = []
        for source in sources:
            tag = f"reuseport probe from {source[1]}".encode()
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as src:
                    src.bind(source)
                    src.sendto(tag, (host, port))
            except OSError:
                out.append(None)
                continue
            found = None
            select.select(group_socks, [], [], timeout)
            for i, sock in enumerate(group_socks):
                try:
                    while True:
                        if sock.recv(200) == tag:
                            found = i
                except BlockingIOError:
                    pass
            out.append(found)
        return out
    finally:
        for sock in group_socks:
            sock.close()


def spread_callers(layout: Layout, n: int, workers: int, port: int) -> tuple[Layout, dict]:
    """The layout with its callers reordered so that the first `n` spread as
    evenly as they can over `workers` SO_REUSEPORT sockets on `port` (the
    kernel would otherwise put a few callers on one worker as often as not:
    two callers share one of two workers half the time), and what was found."""
    pool = layout.callers
    try:
        sockets = reuseport_sockets("127.0.0.1", port, [ep.address for ep in pool], workers)
    except OSError as e:
        return layout, {"workers": workers, "error": str(e)}
    by_socket: dict[int, list[int]] = {}
    for i, sock in enumerate(sockets):
        if sock is not None:
            by_socket.setdefault(sock, []).append(i)
    # round robin over the sockets, starting with the first caller's (5061)
    order = sorted(by_socket, key=lambda k: by_socket[k][0])
    picked: list[int] = []
    while len(picked) < n and any(by_socket.values()):
        for k in order:
            if by_socket[k] and len(picked) < n:
                picked.append(by_socket[k].pop(0))
    rest = [i for i in range(len(pool)) if i not in picked]
    new = replace(layout, callers=tuple(pool[i] for i in picked + rest))
    info = {
        "workers": workers,
        "ports": [pool[i].port for i in picked],
        "sockets": [sockets[i] for i in picked],
    }
    return new, info


def _check_ports(layout: Layout, opts: Options, callers: int) -> None:
    busy = _ports_in_use(layout, opts.proxies, opts.parts, callers)
    if busy:
        raise experiments.BenchError(
            "UDP ports the benchmark needs are in use (another proxy or benchmark running?): " + ", ".join(busy)
        )


def _run_benchmark(opts: Options) -> dict:
    layout = Layout()
    callers = max(
        opts.callers if "throughput" in opts.parts else 1,
        opts.latency_callers if "latency" in opts.parts else 1,
    )
    _check_ports(layout, opts, callers)
    # the proxy's port is free (so no other sipfork's workers, whose
    # SO_REUSEPORT group the probe would join): choose the callers
    spread = None
    most_workers = max(opts.sipfork_workers) if "sipfork" in opts.proxies else 1
    if "throughput" in opts.parts and opts.callers > 1 and most_workers > 1:
        layout, spread = spread_callers(layout, opts.callers, most_workers, layout.ports["sipfork"])
        if spread.get("error"):
            log(f"could not ask the kernel how callers spread over workers: {spread['error']}")
        else:
            log(
                f"callers on ports {', '.join(map(str, spread['ports']))}: on SO_REUSEPORT sockets "
                f"{', '.join(map(str, spread['sockets']))} of a group of {most_workers}"
            )
        _check_ports(layout, opts, callers)
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
            "callers": {
                "throughput_ports": [ep.port for ep in layout.caller_endpoints(opts.callers)],
                "latency_ports": [ep.port for ep in layout.caller_endpoints(opts.latency_callers)],
                "spread": spread,
            },
        },
        "proxies": {},
    }
    log(f"benchmark output in {out}")
    log(f"machine: {results['meta']['machine']['nproc']} cores, {results['meta']['machine']['cpu']}")
    log(f"uptime: {results['meta']['uptime_before']}")

    # Kamailio first: it is the reference, and if sipfork fails the
    # reference numbers are still there.
    order = [p for p in ("kamailio", "sipfork") if p in opts.proxies]
    if "latency" in opts.parts:
        # both proxies up at once, their runs alternating (see latency_interleaved)
        by_proxy, results["meta"]["latency"] = latency_interleaved(order, layout, out, opts)
        for name in order:
            results["proxies"][name] = by_proxy[name]
        _save(out, results)
    for name in order:
        results["proxies"][name] = run_proxy(name, layout, out / name, opts, results["proxies"].get(name))
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


def latency_interleaved(names: list[str], layout: Layout, out: Path, opts: Options) -> tuple[dict, dict]:
    """The fork latency runs of every proxy in `names`, alternating: run 1 of
    each in the order of `names`, then run 2 of each, and so on. The machine
    is shared and drifts over minutes; alternating puts the drift on every
    proxy alike, where all of one proxy's runs and then all of the other's
    would put it into their ratio.

    Every proxy is started and its contacts registered once, before the
    first run, and stays up until the last (the proxies listen on different
    ports, the contacts register with each): each proxy serves all its runs
    from one process and one registration, as when the runs were not
    interleaved, and no run pays for a restart. A proxy is idle during the
    other's runs; its CPU over each run is recorded with the run
    ("idle_proxies_cpu_s") to show that it costs next to nothing.

    Returns, per proxy, {"latency": [runs], "latency_git", "error" when it
    failed, "proxy_alive_at_end", "log_tail"}, and what to record in
    meta.latency (the order of the runs, the load before and after)."""
    info: dict = {
        "interleaved": True,
        "proxies_running": "all at once",
        "order": [],
        "uptime_before": uptime(),
    }
    by_proxy: dict[str, dict] = {}
    running: dict[str, proxies.Proxy] = {}
    started: list[proxies.Proxy] = []
    try:
        for name in names:
            workdir = out / name / "latency"
            res: dict = {"latency": [], "latency_git": proxies.git_revision()}
            by_proxy[name] = res
            proxy = make_proxy(name, workdir, layout, opts)
            log(f"{name}: starting for the latency runs")
            try:
                proxy.start()
            except proxies.ProxyError as e:
                res["error"] = str(e)
                log(f"{name}: could not start: {e}")
                continue
            started.append(proxy)
            try:
                experiments.register_contacts(proxy, layout, workdir, log)
            except experiments.BenchError as e:
                res["error"] = str(e)
                log(f"{name}: {e}")
                continue
            running[name] = proxy
        for run in range(opts.latency_runs):
            for name in names:
                proxy = running.get(name)
                if proxy is None:
                    continue
                others = {o: p for o, p in running.items() if o != name}
                idle0 = {o: p.cpu_seconds() for o, p in others.items()}
                try:
                    result = experiments.latency_run(
                        proxy, layout, out / name / "latency", run=run, runs=opts.latency_runs,
                        calls=opts.latency_calls, rate=opts.latency_rate,
                        callers=opts.latency_callers, log=log,
                    )  # fmt: skip
                except experiments.BenchError as e:
                    by_proxy[name]["error"] = str(e)
                    log(f"{name}: {e}")
                    del running[name]
                    continue
                result["run"] = run + 1
                result["position"] = len(info["order"]) + 1
                result["idle_proxies_cpu_s"] = {
                    o: round(p.cpu_seconds() - idle0[o], 3) for o, p in others.items()
                }
                info["order"].append(f"{name} {run + 1}")
                by_proxy[name]["latency"].append(result)
                if not proxy.alive():
                    by_proxy[name]["error"] = f"{name} died during latency run {run + 1}: {proxy.log_tail(500)}"
                    log(by_proxy[name]["error"])
                    del running[name]
    finally:
        for proxy in started:
            res = by_proxy[proxy.name]
            res["proxy_alive_at_end"] = proxy.alive()
            res["log_tail"] = proxy.log_tail(2000)
            proxy.stop()
    info["uptime_after"] = uptime()
    log("latency runs in this order: " + ", ".join(info["order"]))
    return by_proxy, info


def run_proxy(name: str, layout: Layout, workdir: Path, opts: Options, prior: dict | None = None) -> dict:
    """Throughput and memory of one proxy (its latency runs are in `prior`,
    from latency_interleaved)."""
    workdir.mkdir(parents=True, exist_ok=True)
    # the working tree is shared and sipfork is installed editable: note the
    # revision each proxy's measurements ran with
    res: dict = dict(prior or {})
    res.update({"uptime_before": uptime(), "git": proxies.git_revision()})
    workers_list: list[int | None] = list(opts.sipfork_workers) if name == "sipfork" else [None]
    if name == "sipfork":
        res["workers"] = workers_list[0]
    if "throughput" in opts.parts:
        runs = []
        for i, workers in enumerate(workers_list):
            # a proxy of its own for each configuration
            session = calls_session(
                name, layout, workdir / ("calls" if i == 0 else f"calls-{workers}-workers"), opts,
                workers=workers, latency=False, throughput=True,
            )  # fmt: skip
            series = session.get("throughput") or {
                "label": series_label(name, workers), "workers": workers, "callers": opts.callers,
                "steps": [], "max_clean_rate": None, "error": session.get("error", "not measured"),
            }  # fmt: skip
            if i == 0:
                # the first configuration's failure is the proxy's (as when
                # latency and throughput shared one session); a latency
                # failure comes first
                if "error" in session:
                    res.setdefault("error", session["error"])
                res["proxy_alive_at_end"] = session.get("proxy_alive_at_end")
                res["log_tail"] = session.get("log_tail", "")
            else:
                series["proxy_alive_at_end"] = session.get("proxy_alive_at_end")
                series["log_tail"] = session.get("log_tail", "")
            runs.append(series)
        res["throughput_runs"] = runs
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


def calls_session(
    name: str, layout: Layout, workdir: Path, opts: Options, *, workers: int | None,
    latency: bool, throughput: bool,
) -> dict:
    """Start the proxy, register the three contacts, run the latency part
    and/or the throughput steps, stop it. Returns "latency" (the runs),
    "throughput" (one series: label, workers, callers, steps, highest clean
    rate), "error" when something went wrong, and the proxy's log tail."""
    label = series_label(name, workers)
    out: dict = {}
    proxy = make_proxy(name, workdir, layout, opts, workers=workers)
    log(f"{label}: starting")
    try:
        proxy.start()
    except proxies.ProxyError as e:
        out["error"] = str(e)
        log(f"{label}: could not start: {e}")
        return out
    series: dict | None = None
    try:
        experiments.register_contacts(proxy, layout, workdir, log)
        if latency:
            out["latency"] = experiments.latency(
                proxy, layout, workdir, runs=opts.latency_runs, calls=opts.latency_calls,
                rate=opts.latency_rate, callers=opts.latency_callers, log=log,
            )  # fmt: skip
        if throughput:
            series = {"label": label, "workers": workers, "callers": opts.callers, "steps": []}
            out["throughput"] = series
            series["steps"] = experiments.throughput(
                proxy, layout, workdir, rates=opts.rates, step_s=opts.step_s,
                callers=opts.callers, label=label, log=log,
            )  # fmt: skip
            series["max_clean_rate"] = experiments.max_clean_rate(series["steps"])
            log(f"{label}: highest clean rate {series['max_clean_rate']} calls/s")
    except experiments.BenchError as e:
        out["error"] = str(e)
        if series is not None:
            series["error"] = str(e)
            series.setdefault("max_clean_rate", experiments.max_clean_rate(series["steps"]))
        log(f"{label}: {e}")
    finally:
        out["proxy_alive_at_end"] = proxy.alive()
        out["log_tail"] = proxy.log_tail(2000)
        proxy.stop()
    return out


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


def free_layout(seed: int | None = None, callers: int = 1) -> Layout:
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
        callers=tuple(endpoint("127.0.0.1") for _ in range(callers)),
        answerer=endpoint("127.0.0.2"),
        ringers=(endpoint("127.0.0.3"), endpoint("127.0.0.4")),
        registrar_client=endpoint("127.0.0.5"),
        ports={"sipfork": pick("127.0.0.1"), "kamailio": pick("127.0.0.1")},
    )


SMOKE_CALLERS = 2


def run_smoke(
    *,
    calls: int = 20,
    rate: float = 10.0,
    callers: int = SMOKE_CALLERS,
    proxy_name: str = "sipfork",
    workdir: Path | None = None,
) -> dict:
    """Register 3 SIPp contacts with sipfork (one worker) and place `calls`
    calls through it from `callers` SIPp callers. Returns a summary with "ok"
    true when every call succeeded."""
    if install.missing_programs(["sipp"]):
        raise experiments.BenchError("sipp is not installed (Debian package sip-tester; `make test` installs it)")
    layout = free_layout(callers=callers)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="sipfork-smoke-")
        workdir = Path(tmp.name)
    t0 = time.monotonic()
    proxy = make_proxy(proxy_name, workdir, layout, Options(), workers=1)
    summary: dict = {
        "proxy": proxy_name, "calls": calls, "rate": rate, "caller_processes": callers, "workdir": str(workdir)
    }  # fmt: skip
    try:
        proxy.start(ready_timeout=20)
        batch = experiments.smoke(
            proxy, layout, workdir, calls=calls, rate=rate, callers=callers, log=log
        )
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
            f"smoke: {summary['proxy']}: {summary['completed']}/{summary['calls']} calls completed "
            f"({summary['caller_processes']} callers), "
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
