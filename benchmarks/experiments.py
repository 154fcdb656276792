"""The measurements: contacts, a batch of calls, fork latency, throughput
steps, registration memory, and the smoke run.

Throughput and memory, one proxy at a time: the harness starts it,
registers the three contacts, measures, stops it, then does the same for the
next proxy, so the two never compete for the machine's cores. Fork latency
(10 calls/s) has both proxies running and registered at once and alternates
their runs (runner.latency_interleaved): the machine's drift over minutes
then falls on both alike; the idle proxy's CPU is recorded with each run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import capture, sipp
from .layout import PASSWORD, USER, Layout
from .proxies import ProcessCpu, Proxy

Log = Callable[[str], None]

CONTACT_TIMEWAIT_S = 2.0  # <timewait> at the end of the contacts' scenarios


def _quiet(_: str) -> None:
    pass


# --- contacts --------------------------------------------------------------


def register_contacts(proxy: Proxy, layout: Layout, workdir: Path, log: Log = _quiet) -> dict:
    """REGISTER the three contacts of the bench user, each from its own
    address and port (the proxy may route to the Contact or to the source)."""
    results = {}
    for i, ep in enumerate(layout.contacts):
        inf = sipp.write_injection(
            workdir / f"contact{i}.csv", [(USER, ep.host, ep.port, PASSWORD)]
        )
        p = sipp.SippProcess(
            f"register-contact{i}",
            sipp.register_args(ep, proxy.address, inf, count=1, rate=10, limit=1),
            workdir,
            timeout_s=15,
        )
        p.wait(20)
        p.stop()
        st = p.stats()
        results[f"{ep.host}:{ep.port}"] = st.successful == 1
        if st.successful != 1:
            n, events = p.errors()
            raise BenchError(
                f"{proxy.name}: contact {ep.host}:{ep.port} did not register "
                f"(sipp exit {p.returncode}; {n} errors):\n" + "\n".join(events) + p.stderr_text()
            )
    log(f"  {proxy.name}: 3 contacts registered")
    return results


class BenchError(RuntimeError):
    pass


# --- one batch of calls ----------------------------------------------------


def split_calls(calls: int, callers: int) -> list[int]:
    """`calls` shared out over `callers` as evenly as possible (the first get
    one more); a caller with no call is left out."""
    base, extra = divmod(calls, callers)
    return [n for n in (base + (i < extra) for i in range(callers)) if n]


@dataclass
class CallBatch:
    rate: float
    calls: int
    wall_s: float
    callers: list[sipp.SippStats]
    caller_calls: list[int]  # the calls each caller was asked to place
    contacts: list[sipp.SippStats]
    proxy_cpu_s: float
    proxy_cpu_by_process: list[dict]
    sipp_cpu_s: float
    caller_exits: list[int | None]
    udp_in: int
    udp_drops: int
    proxy_udp_drops: int
    error_count: int
    first_errors: list[str]

    @property
    def completed(self) -> int:
        return sum(c.successful for c in self.callers)

    @property
    def contact_missing(self) -> int:
        """INVITEs that never reached a contact (every call forks to all three)."""
        return sum(max(0, self.calls - c.created) for c in self.contacts)

    @property
    def failed(self) -> int:
        # calls the callers did not complete, contacts' calls that failed or
        # never ended, and forks that never reached a contact (a caller
        # would not notice a missing ringing branch)
        unfinished = sum(
            max(0, n - c.successful - c.failed) for n, c in zip(self.caller_calls, self.callers)
        )
        caller_failed = sum(c.failed for c in self.callers)
        contact_failed = sum(c.failed + c.current for c in self.contacts)
        return caller_failed + unfinished + contact_failed + self.contact_missing

    @property
    def retransmissions(self) -> int:
        return sum(c.retransmissions for c in (*self.callers, *self.contacts))

    @property
    def cpu_per_call_ms(self) -> float | None:
        return 1000 * self.proxy_cpu_s / self.completed if self.completed else None

    @property
    def switches_per_call(self) -> tuple[float, float] | None:
        """The proxy's context switches per completed call, (voluntary, involuntary)."""
        if not self.completed:
            return None
        voluntary = sum(p.get("voluntary", 0) for p in self.proxy_cpu_by_process)
        involuntary = sum(p.get("involuntary", 0) for p in self.proxy_cpu_by_process)
        return voluntary / self.completed, involuntary / self.completed

    def as_dict(self) -> dict:
        return {
            "rate": self.rate,
            "calls": self.calls,
            "wall_s": round(self.wall_s, 3),
            "completed": self.completed,
            "failed": self.failed,
            "contact_missing": self.contact_missing,
            "retransmissions": self.retransmissions,
            "proxy_cpu_s": round(self.proxy_cpu_s, 3),
            "proxy_cpu_by_process": self.proxy_cpu_by_process,
            "cpu_per_call_ms": None if self.cpu_per_call_ms is None else round(self.cpu_per_call_ms, 4),
            "switches_per_call": None if self.switches_per_call is None else [round(n, 2) for n in self.switches_per_call],
            "sipp_cpu_s": round(self.sipp_cpu_s, 3),
            "caller_exits": self.caller_exits,
            "udp_datagrams": self.udp_in,
            "udp_rcvbuf_drops": self.udp_drops,
            "proxy_udp_drops": self.proxy_udp_drops,
            "caller_calls": self.caller_calls,
            "callers": [c.as_dict() for c in self.callers],
            "contacts": [c.as_dict() for c in self.contacts],
            "error_count": self.error_count,
            "first_errors": self.first_errors,
        }


def run_calls(
    proxy: Proxy,
    layout: Layout,
    workdir: Path,
    *,
    rate: float,
    calls: int,
    tag: str,
    callers: int = 1,
    on_started: Callable[[], None] | None = None,
) -> CallBatch:
    """Start the three contacts, place `calls` calls at `rate` from `callers`
    SIPp processes (each its share of the calls at its share of the rate, so
    they all end together), stop everything, and collect every SIPp
    process's statistics and the proxy's CPU time."""
    workdir.mkdir(parents=True, exist_ok=True)
    shares = split_calls(calls, callers)
    endpoints = layout.caller_endpoints(len(shares))
    duration = calls / rate
    limit_s = duration + 30
    contacts = [
        sipp.SippProcess(
            f"{tag}-contact{i}",
            sipp.contact_args(ep, answers=(i == 0), calls=calls),
            workdir,
            timeout_s=limit_s + 20,
        )
        for i, ep in enumerate(layout.contacts)
    ]
    time.sleep(0.4)  # let the contacts bind their sockets
    for c in contacts:
        if not c.running():
            for other in contacts:
                other.stop()
            raise BenchError(f"SIPp contact {c.name} exited at start:\n{c.stderr_text()}")
    if on_started:
        on_started()
    cpu0 = proxy.cpu_by_process()
    sipp_cpu0 = sipp.sipp_cpu_children()
    udp0 = sipp.udp_counters()
    proxy_drops0 = proxy.udp_drops()
    t0 = time.monotonic()
    caller_procs = [
        sipp.SippProcess(
            f"{tag}-caller" if len(shares) == 1 else f"{tag}-caller{i}",
            sipp.caller_args(ep, proxy.address, rate=rate * n / calls, calls=n, index=i),
            workdir,
            timeout_s=limit_s,
        )
        for i, (ep, n) in enumerate(zip(endpoints, shares))
    ]
    deadline = time.monotonic() + limit_s + 5
    for p in caller_procs:
        p.wait(deadline - time.monotonic())
    for p in caller_procs:
        p.stop()
    # the contacts end by themselves once they have seen every call (and
    # waited CONTACT_TIMEWAIT_S for retransmissions)
    deadline = time.monotonic() + 3 + CONTACT_TIMEWAIT_S
    for c in contacts:
        c.wait(deadline - time.monotonic())
    for c in contacts:
        c.stop(grace=sipp.RECV_TIMEOUT_MS / 1000 + 1)
    wall = time.monotonic() - t0
    cpu1 = proxy.cpu_by_process()
    sipp_cpu1 = sipp.sipp_cpu_children()
    udp1 = sipp.udp_counters()
    proxy_drops1 = proxy.udp_drops()
    errors = 0
    first: list[str] = []
    for p in [*caller_procs, *contacts]:
        n, events = p.errors(limit=3)
        errors += n
        first += [f"[{p.name}] {e}" for e in events]
    by_process = cpu_deltas(cpu0, cpu1)
    return CallBatch(
        rate=rate,
        calls=calls,
        wall_s=wall,
        callers=[p.stats() for p in caller_procs],
        caller_calls=shares,
        contacts=[c.stats() for c in contacts],
        proxy_cpu_s=sum(p["cpu_s"] for p in by_process),
        proxy_cpu_by_process=by_process,
        sipp_cpu_s=sipp_cpu1 - sipp_cpu0,
        caller_exits=[p.returncode for p in caller_procs],
        udp_in=udp1.get("in", 0) - udp0.get("in", 0),
        udp_drops=udp1.get("rcvbuf_errors", 0) - udp0.get("rcvbuf_errors", 0),
        proxy_udp_drops=proxy_drops1 - proxy_drops0,
        error_count=errors,
        first_errors=first[:6],
    )


def cpu_deltas(before: list[ProcessCpu], after: list[ProcessCpu]) -> list[dict]:
    """CPU seconds and context switches of each of the proxy's processes
    between two readings (a process that started in between counts from
    zero; one that ended is lost, as in the total)."""
    start = {p.pid: p for p in before}
    zero = ProcessCpu(0, "", 0.0)
    deltas = []
    for p in after:
        first = start.get(p.pid, zero)
        deltas.append({"pid": p.pid, "role": p.role, "cpu_s": round(p.cpu_s - first.cpu_s, 3),
                       "voluntary": p.voluntary - first.voluntary,
                       "involuntary": p.involuntary - first.involuntary})
    return deltas


# --- fork latency ----------------------------------------------------------


def latency_run(
    proxy: Proxy,
    layout: Layout,
    workdir: Path,
    *,
    run: int,
    runs: int,
    calls: int,
    rate: float,
    callers: int = 1,
    log: Log = _quiet,
) -> dict:
    """One batch at low load (run `run` of `runs`, counted from 0), captured
    on loopback and matched."""
    pcap = workdir / f"latency-{run}.pcap"
    cap = capture.Capture(pcap, capture.capture_filter(layout.sipp_endpoints(callers)))
    cap.start()
    try:
        batch = run_calls(
            proxy, layout, workdir, rate=rate, calls=calls, tag=f"latency-{run}", callers=callers
        )
    finally:
        cap.stop()
    result = capture.analyse(pcap, layout.caller_endpoints(callers), layout.contacts)
    result["batch"] = batch.as_dict()
    result["capture_dropped"] = cap.dropped()
    s = result["summary"]
    log(
        f"  {proxy.name} latency run {run + 1}/{runs}: {batch.completed}/{calls} calls, "
        f"first branch p50 {s['invite_first_branch']['p50']:.0f} us, "
        f"last branch p50 {s['invite_last_branch']['p50']:.0f} us, "
        f"200->last CANCEL p50 {s['ok_last_cancel']['p50']:.0f} us"
    )
    return result


def latency(
    proxy: Proxy,
    layout: Layout,
    workdir: Path,
    *,
    runs: int,
    calls: int,
    rate: float,
    callers: int = 1,
    log: Log = _quiet,
) -> list[dict]:
    """`runs` batches at low load on one proxy, one after the other (the
    harness interleaves the proxies' runs instead: runner.latency_interleaved)."""
    return [
        latency_run(
            proxy, layout, workdir, run=run, runs=runs, calls=calls, rate=rate, callers=callers, log=log
        )
        for run in range(runs)
    ]


# --- throughput ------------------------------------------------------------


def throughput(
    proxy: Proxy,
    layout: Layout,
    workdir: Path,
    *,
    rates: list[float],
    step_s: float,
    callers: int = 1,
    label: str = "",
    log: Log = _quiet,
    stop_after_failures: int = 1,
) -> list[dict]:
    """Step the call rate up; stop after the first step with failed calls or
    retransmissions (or when the proxy died)."""
    label = label or proxy.name
    steps = []
    bad = 0
    for rate in rates:
        calls = max(1, int(round(rate * step_s)))
        load0 = os.getloadavg()[0]
        batch = run_calls(
            proxy, layout, workdir, rate=rate, calls=calls, tag=f"step-{rate:g}", callers=callers
        )
        step = batch.as_dict()
        step["late_s"] = round(batch.wall_s - step_s, 2)
        step["load_before"] = round(load0, 2)
        step["clean"] = batch.failed == 0 and batch.retransmissions == 0 and batch.completed == calls
        steps.append(step)
        cpc = batch.cpu_per_call_ms
        workers = [p["cpu_s"] for p in batch.proxy_cpu_by_process if p["role"] == "worker"]
        log(
            f"  {label} {rate:g} calls/s: {batch.completed}/{calls} completed, "
            f"{batch.failed} failed, {batch.retransmissions} retransmissions, "
            f"CPU {'-' if cpc is None else f'{cpc:.3f}'} ms/call"
            + (f" (workers {' / '.join(f'{w:.2f}' for w in workers)} s)" if workers else "")
            + f", UDP drops {batch.proxy_udp_drops} at the proxy / {batch.udp_drops} in all, "
            f"wall {batch.wall_s:.1f} s"
        )
        if not proxy.alive():
            log(f"  {proxy.name} died: {proxy.log_tail(500)}")
            break
        if not step["clean"]:
            bad += 1
            if bad >= stop_after_failures:
                break
        time.sleep(1.0)
    return steps


def max_clean_rate(steps: list[dict]) -> float | None:
    """The highest rate below the first unclean step that was clean."""
    best = None
    for s in steps:
        if not s["clean"]:
            break
        best = s["rate"]
    return best


# --- memory ----------------------------------------------------------------


def bulk_users(n: int) -> list[str]:
    return [f"u{i:06d}" for i in range(1, n + 1)]


def register_many(
    proxy: Proxy,
    layout: Layout,
    workdir: Path,
    users: list[str],
    *,
    tag: str,
    rate: float,
    limit: int,
    time_budget_s: float,
) -> dict:
    """REGISTER one contact for each user as fast as the proxy answers
    (at most `limit` outstanding), within a time budget."""
    ep = layout.registrar_client
    rows = [(u, layout.bulk_contact_host, layout.bulk_contact_port, PASSWORD) for u in users]
    inf = sipp.write_injection(workdir / f"{tag}.csv", rows)
    p = sipp.SippProcess(
        tag,
        sipp.register_args(
            ep, proxy.address, inf, count=len(users), rate=rate, limit=limit
        ),
        workdir,
        timeout_s=time_budget_s,
    )
    p.wait(time_budget_s + 10)
    p.stop()
    st = p.stats()
    n, events = p.errors(limit=3)
    wall = p.wall_s
    return {
        "requested": len(users),
        "registered": st.successful,
        "failed": st.failed,
        "retransmissions": st.retransmissions,
        "wall_s": round(wall, 2),
        "per_second": round(st.successful / st.elapsed_s, 1) if st.elapsed_s else None,
        "within_budget": st.successful == len(users),
        "error_count": n,
        "first_errors": events,
    }


def memory(
    make_proxy: Callable[[list[str]], Proxy],
    layout: Layout,
    workdir: Path,
    *,
    counts: list[int],
    rate: float,
    limit: int,
    time_budget_s: float,
    settle_s: float = 35.0,
    log: Log = _quiet,
) -> dict:
    """Start the proxy knowing max(counts) users, then register one contact
    per user in stages, measuring memory after each stage, and once more
    `settle_s` later, when the REGISTER transactions have ended (RFC 3261
    Timer J keeps a non-INVITE server transaction 32 s after its response)."""
    total = max(counts)
    users = bulk_users(total)
    t0 = time.monotonic()
    proxy = make_proxy(users)
    proxy.start(ready_timeout=120)
    result: dict = {"users_configured": total, "start_s": round(time.monotonic() - t0, 2)}
    try:
        time.sleep(1.0)
        base = proxy.memory()
        result["baseline"] = base.__dict__
        log(f"  {proxy.name} with {total} users configured: PSS {base.pss_sum_kib / 1024:.1f} MiB")
        stages = []
        done = 0
        budget_left = time_budget_s
        for count in sorted(counts):
            batch = users[done:count]
            if not batch:
                continue
            t = time.monotonic()
            reg = register_many(
                proxy, layout, workdir, batch, tag=f"register-{count}", rate=rate,
                limit=limit, time_budget_s=max(5.0, budget_left),
            )  # fmt: skip
            budget_left -= time.monotonic() - t
            done += reg["registered"]
            time.sleep(1.0)
            mem = proxy.memory()
            stage = {
                "target": count,
                "registered_total": done,
                "registration": reg,
                "memory": mem.__dict__,
                "proxy_cpu_s": round(proxy.cpu_seconds(), 2),
            }
            stages.append(stage)
            log(
                f"  {proxy.name}: {done} contacts registered "
                f"({reg['per_second']} REGISTER/s, {reg['failed']} failed), "
                f"PSS {mem.pss_sum_kib / 1024:.1f} MiB, RSS(main) {mem.rss_main_kib / 1024:.1f} MiB"
            )
            if reg["registered"] < len(batch) or budget_left <= 0 or not proxy.alive():
                result["stopped_early"] = (
                    f"stopped at {done} of {total} contacts "
                    f"({'time budget' if budget_left <= 0 else 'failures'})"
                )
                break
        result["stages"] = stages
        if stages and settle_s > 0 and proxy.alive():
            time.sleep(settle_s)
            mem = proxy.memory()
            result["settled"] = {
                "after_s": settle_s,
                "registered_total": done,
                "memory": mem.__dict__,
            }
            log(
                f"  {proxy.name}: {settle_s:.0f} s later: PSS {mem.pss_sum_kib / 1024:.1f} MiB, "
                f"RSS(main) {mem.rss_main_kib / 1024:.1f} MiB"
            )
    finally:
        proxy.stop()
    return result


# --- smoke -----------------------------------------------------------------


def smoke(
    proxy: Proxy, layout: Layout, workdir: Path, *, calls: int, rate: float, callers: int, log: Log
) -> dict:
    register_contacts(proxy, layout, workdir, log)
    batch = run_calls(proxy, layout, workdir, rate=rate, calls=calls, tag="smoke", callers=callers)
    return batch.as_dict()
