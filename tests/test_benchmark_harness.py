"""The benchmark harness's bookkeeping, without SIPp or a proxy: several
callers (the calls shared out, every count summed over all of them, ports
and media ports apart), the report's throughput series (sipfork with 1 and
2 workers beside Kamailio), its memory growth figures, and the fork latency
runs alternating between the proxies (and the report saying so)."""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the harness lives in benchmarks/ beside the package
    sys.path.insert(0, str(ROOT))

from benchmarks import __main__ as cli  # noqa: E402
from benchmarks import experiments, report, runner  # noqa: E402
from benchmarks.layout import MAX_CALLERS, Layout  # noqa: E402
from benchmarks.sipp import SippStats  # noqa: E402


def test_calls_are_shared_out_over_the_callers():
    assert experiments.split_calls(4000, 2) == [2000, 2000]
    assert experiments.split_calls(10, 4) == [3, 3, 2, 2]
    assert experiments.split_calls(2, 4) == [1, 1]  # a caller with nothing to do is not started
    assert experiments.split_calls(7, 1) == [7]


def test_callers_have_their_own_ports_and_media_ports_ten_apart():
    layout = Layout()
    callers = layout.caller_endpoints(MAX_CALLERS)
    assert callers[0].port == 5061
    assert {c.host for c in callers} == {"127.0.0.1"}
    everyone = [*callers, *layout.contacts, layout.registrar_client]
    assert len({(e.host, e.port) for e in everyone}) == len(everyone)
    assert len({e.control_port for e in everyone}) == len(everyone)
    media = sorted(e.media_port for e in everyone)  # SIPp binds -mp and -mp + 2
    assert all(b - a >= 10 for a, b in itertools.pairwise(media))
    assert not {e.port for e in everyone} & set(layout.ports.values())
    assert layout.sipp_endpoints(2) == (*callers[:2], *layout.contacts)
    with pytest.raises(ValueError):
        layout.caller_endpoints(MAX_CALLERS + 1)


def test_free_layout_for_the_smoke_run_has_as_many_callers_as_asked():
    layout = runner.free_layout(seed=1, callers=3)
    assert len(layout.callers) == 3
    assert len({c.port for c in layout.callers}) == 3


def test_callers_are_spread_over_a_reuseport_group_as_evenly_as_the_kernel_allows():
    layout = runner.free_layout(callers=12)
    port = runner.free_layout(callers=1).ports["sipfork"]
    sources = [ep.address for ep in layout.callers]
    every = runner.reuseport_sockets("127.0.0.1", port, sources, 2)
    assert set(every) <= {0, 1}
    # the kernel's choice depends only on the addresses: asked again, it is the same
    assert runner.reuseport_sockets("127.0.0.1", port, sources, 2) == every

    spread, info = runner.spread_callers(layout, 4, 2, port)
    chosen = spread.caller_endpoints(4)
    assert info["ports"] == [ep.port for ep in chosen]
    assert info["sockets"] == [every[layout.callers.index(ep)] for ep in chosen]
    assert set(spread.callers) == set(layout.callers) and len(spread.callers) == 12  # reordered, none lost
    counts = [info["sockets"].count(k) for k in (0, 1)]
    available = [every.count(k) for k in (0, 1)]
    assert sum(counts) == min(4, sum(available))
    # a socket is short of the others only when it has no caller left to give
    # (the kernel may put 11 of the 12 on one socket: then it is 1 and 3)
    assert all(c == a or c >= max(counts) - 1 for c, a in zip(counts, available, strict=True))
    assert chosen[0] == layout.callers[0]  # the first caller stays first


def _batch(callers: list[SippStats], shares: list[int], contacts: list[SippStats]) -> experiments.CallBatch:
    return experiments.CallBatch(
        rate=100, calls=sum(shares), wall_s=1.0, callers=callers, caller_calls=shares, contacts=contacts,
        proxy_cpu_s=2.0, proxy_cpu_by_process=[], sipp_cpu_s=1.0, caller_exits=[0] * len(callers),
        udp_in=0, udp_drops=0, proxy_udp_drops=0, error_count=0, first_errors=[],
    )  # fmt: skip


def test_every_count_sums_over_all_callers():
    contacts = [SippStats(created=40, successful=40) for _ in range(3)]
    clean = _batch([SippStats(created=20, successful=20), SippStats(created=20, successful=20)], [20, 20], contacts)
    assert (clean.completed, clean.failed, clean.retransmissions) == (40, 0, 0)
    assert clean.cpu_per_call_ms == pytest.approx(50.0)

    # the second caller: 2 failed, 3 never finished, 5 retransmissions
    second = SippStats(created=20, successful=15, failed=2, retransmissions=5)
    batch = _batch([SippStats(created=20, successful=20, retransmissions=1), second], [20, 20], contacts)
    assert batch.completed == 35
    assert batch.failed == 5
    assert batch.retransmissions == 6
    d = batch.as_dict()
    assert len(d["callers"]) == 2 and d["caller_calls"] == [20, 20]


def test_cpu_and_context_switch_deltas_per_process():
    from benchmarks.proxies import ProcessCpu

    before = [ProcessCpu(10, "main", 1.0, 5, 1), ProcessCpu(11, "worker", 2.0, 100, 40),
              ProcessCpu(12, "worker", 3.0, 7, 0)]  # fmt: skip
    after = [ProcessCpu(10, "main", 1.01, 6, 1), ProcessCpu(11, "worker", 4.5, 130, 70),
             ProcessCpu(12, "worker", 3.0, 7, 0), ProcessCpu(13, "kamailio", 0.2, 9, 3)]  # fmt: skip
    deltas = experiments.cpu_deltas(before, after)
    assert deltas == [
        {"pid": 10, "role": "main", "cpu_s": 0.01, "voluntary": 1, "involuntary": 0},
        {"pid": 11, "role": "worker", "cpu_s": 2.5, "voluntary": 30, "involuntary": 30},
        {"pid": 12, "role": "worker", "cpu_s": 0.0, "voluntary": 0, "involuntary": 0},
        {"pid": 13, "role": "kamailio", "cpu_s": 0.2, "voluntary": 9, "involuntary": 3},
    ]
    contacts = [SippStats(created=10, successful=10) for _ in range(3)]
    batch = _batch([SippStats(created=10, successful=10)], [10], contacts)
    batch.proxy_cpu_by_process = deltas
    assert batch.switches_per_call == pytest.approx((4.0, 3.3))
    assert batch.as_dict()["switches_per_call"] == [4.0, 3.3]


def test_the_proxy_s_own_context_switches_are_read_from_proc():
    from benchmarks.proxies import Proxy

    proxy = Proxy("self", ["true"], 0, Path("."))
    proxy.pids = lambda: [os.getpid()]  # type: ignore[method-assign]
    first = proxy.cpu_by_process()[0]
    time.sleep(0.01)  # waiting is a voluntary switch: what is measured here
    second = proxy.cpu_by_process()[0]
    assert second.voluntary > first.voluntary >= 1


def test_command_line_callers_and_workers():
    args = cli.parser().parse_args(["run", "--callers", "3", "--sipfork-workers", "1,2,4"])
    assert args.callers == 3 and args.sipfork_workers == [1, 2, 4]
    for bad in (["--callers", "0"], ["--callers", str(MAX_CALLERS + 1)], ["--sipfork-workers", "0"]):
        with pytest.raises(SystemExit):
            cli.parser().parse_args(["run", *bad])
    opts = runner.Options()
    assert opts.sipfork_workers == [1, 2] and opts.latency_callers == 1 and opts.callers >= 2


# --- the report -------------------------------------------------------------------


def _step(rate: float, cpu_ms: float, clean: bool = True, workers: tuple[float, ...] = ()) -> dict:
    calls = int(rate * 5)
    stats = SippStats(created=calls, successful=calls if clean else calls - 9, failed=0 if clean else 9,
                      failed_by_cause={} if clean else {"TimeoutOnRecv": 9}).as_dict()  # fmt: skip
    return {
        "rate": rate, "calls": calls, "completed": stats["successful"], "failed": stats["failed"],
        "retransmissions": 0 if clean else 4, "cpu_per_call_ms": cpu_ms, "proxy_cpu_s": cpu_ms * calls / 1000,
        "sipp_cpu_s": 1.0, "proxy_udp_drops": 0, "udp_rcvbuf_drops": 0, "wall_s": 7.0, "clean": clean,
        "proxy_cpu_by_process": [{"pid": 1, "role": "main", "cpu_s": 0.01}]
        + [{"pid": 2 + i, "role": "worker", "cpu_s": w} for i, w in enumerate(workers)],
        "callers": [stats], "contacts": [stats], "first_errors": [] if clean else ["[step-caller0] oops"],
    }  # fmt: skip


def _memory(base: float, at10k: float, at100k: float) -> dict:
    def mem(kib: float) -> dict:
        return {"pss_sum_kib": kib, "rss_main_kib": kib, "rss_sum_kib": kib, "processes": 1}

    def stage(n: int, kib: float) -> dict:
        return {"registered_total": n, "memory": mem(kib), "registration": {"per_second": 1000, "failed": 0, "retransmissions": 0}}

    return {
        "users_configured": 100_000, "start_s": 1.0, "baseline": mem(base),
        "stages": [stage(10_000, at10k), stage(100_000, at100k)],
        "settled": {"after_s": 35, "registered_total": 100_000, "memory": mem(at100k)},
    }  # fmt: skip


def _results() -> dict:
    return {
        "meta": {
            "date": "2026-01-01T00:00:00+00:00", "command": "python -m benchmarks run",
            "machine": {"nproc": 2, "cpu": "cpu", "memory_gib": 8, "kernel": "6", "python": "3.11"},
            "uptime_before": "load average: 0.00, 0.00, 0.00", "uptime_after": "load average: 0.00, 0.00, 0.00",
            "versions": {"sipfork": "0.1", "git": "abc", "kamailio": "kamailio 5.6", "sipp": "3.6"},
            "callers": {"spread": {"workers": 2, "ports": [5061, 5101, 5104, 5102], "sockets": [0, 1, 0, 1]}},
            "options": {"step_s": 5, "callers": 4, "latency_callers": 1, "sipfork_workers": [1, 2],
                        "register_limit": 50, "latency_calls": 10, "latency_rate": 10, "latency_runs": 1},
        },
        "proxies": {
            "kamailio": {
                "git": "abc",
                "throughput_runs": [{"label": "kamailio", "workers": None, "callers": 4, "max_clean_rate": 400,
                                     "steps": [_step(200, 1.0), _step(400, 0.8)]}],
                "memory": _memory(base=10_000, at10k=20_000, at100k=110_000),
            },
            "sipfork": {
                "git": "abc", "workers": 1,
                "throughput_runs": [
                    {"label": "sipfork", "workers": 1, "callers": 4, "max_clean_rate": 200,
                     "steps": [{**_step(200, 2.0), "switches_per_call": [3.9, 13.6]},
                               _step(400, 1.8, clean=False)]},
                    {"label": "sipfork ×2", "workers": 2, "callers": 4, "max_clean_rate": 400,
                     "steps": [_step(200, 2.2, workers=(1.1, 1.0)), _step(400, 2.0, workers=(2.5, 1.4))]},
                ],
                "memory": _memory(base=100_000, at10k=100_000, at100k=190_000),
            },
        },
    }  # fmt: skip


def test_report_has_a_series_per_worker_count_with_ratios():
    md = report.markdown(_results(), {})
    assert "| 200 | sipfork | yes |" in md
    assert "| 200 | sipfork ×2 | yes |" in md
    assert "| 200 | kamailio | yes |" in md
    # context switches per call, voluntary / involuntary; "–" for a step recorded without them
    assert "| 2.000 | 2.00 | 1.00 | 3.9 / 13.6 | 0 / 0 | 7.0 |" in md
    assert "| 400 | kamailio | yes | 2000/2000 | 0 | 0 | 0.800 | 1.60 | 1.00 | – | 0 / 0 | 7.0 |" in md
    assert "| 200 | **sipfork / kamailio** | | | | | 2.00× |" in md
    assert "| 200 | **sipfork ×2 / kamailio** | | | | | 2.20× |" in md
    assert "Highest clean rate, sipfork ×2: **400 calls/s**" in md
    assert "Ratio sipfork / Kamailio: 0.50×" in md
    assert "Ratio sipfork ×2 / Kamailio: 1.00×" in md
    assert "Ratio sipfork ×2 / sipfork: 2.00×" in md
    assert "200/s: 1.10 + 1.00; 400/s: 2.50 + 1.40" in md
    assert "split over 4 SIPp callers" in md
    assert "(5061, 5101, 5104, 5102) were chosen" in md and "(2 + 2 callers)" in md
    assert "### What SIPp reported for sipfork\n" in md and "TimeoutOnRecv 18" in md


def test_report_memory_growth_from_start_and_between_the_stages():
    md = report.markdown(_results(), {})
    # from start: sipfork (190000 - 100000) KiB / 100k, kamailio 100000 KiB / 100k
    assert "| from start-up, right after registering (0 → 100,000 contacts, ÷ 100,000) | 922 | 1,024 | 0.90× |" in md
    # between: sipfork 90000 KiB / 90k = 1024 bytes, kamailio 90000 KiB / 90k
    assert "| **between the stages**, right after registering (10,000 → 100,000 contacts, ÷ 90,000) | 1,024 | 1,024 | 1.00× |" in md
    growth = report.memory_growth(_memory(base=0, at10k=10, at100k=100))
    assert growth["between"]["bytes"] == pytest.approx(90 * 1024 / 90_000)
    assert "between" not in report.memory_growth({"baseline": {"pss_sum_kib": 1}, "stages": _memory(0, 1, 2)["stages"][:1]})


def test_report_reads_results_written_before_several_callers_and_workers():
    old = _results()
    for name in ("sipfork", "kamailio"):
        r = old["proxies"][name]
        run = r.pop("throughput_runs")[0]
        r["throughput"], r["max_clean_rate"] = run["steps"], run["max_clean_rate"]
        for step in r["throughput"]:
            step["caller"] = step.pop("callers")[0]
    del old["meta"]["options"]["callers"]
    old["meta"]["options"]["sipfork_workers"] = None
    md = report.markdown(old, {})
    assert "one SIPp caller places the calls" in md
    assert "| 400 | sipfork | **no** |" in md and "×2" not in md
    assert "TimeoutOnRecv 18" in md


# --- fork latency: the proxies' runs alternate -------------------------------------


def _latency_run(p50: float, run: int | None = None, idle: dict | None = None) -> dict:
    summary = {m: {"p50": p50, "p90": p50, "p99": p50, "max": p50, "n": 10} for m in report.METRICS}
    out = {
        "summary": summary, "batch": {"failed": 0, "first_errors": []},
        "completeness": {"calls": 10, "all_3_branches": 10, "both_cancels": 10},
    }  # fmt: skip
    if run is not None:
        out.update(run=run, idle_proxies_cpu_s=idle or {})
    return out


def test_report_says_the_latency_runs_were_interleaved_and_shows_each_pair():
    results = _results()
    results["meta"]["options"]["latency_runs"] = 2
    results["meta"]["latency"] = {
        "interleaved": True, "order": ["kamailio 1", "sipfork 1", "kamailio 2", "sipfork 2"],
        "uptime_before": "load average: 0.10, 0.00, 0.00", "uptime_after": "load average: 0.10, 0.00, 0.00",
    }  # fmt: skip
    results["proxies"]["kamailio"]["latency"] = [
        _latency_run(100, 1, {"sipfork": 0.01}), _latency_run(200, 2, {"sipfork": 0.03})
    ]  # fmt: skip
    results["proxies"]["sipfork"]["latency"] = [
        _latency_run(300, 1, {"kamailio": 0.02}), _latency_run(400, 2, {"kamailio": 0.0})
    ]  # fmt: skip
    md = report.markdown(results, {})
    assert "Runs interleaved, in this order: kamailio 1, sipfork 1, kamailio 2, sipfork 2." in md
    assert "CPU of the idle proxy over a run: at most 0.03 s." in md
    assert "| 1 | 100 | 300 | 3.00× |" in md and "| 2 | 200 | 400 | 2.00× |" in md
    # the table keeps the medians over the runs
    assert "| INVITE in -> first forked INVITE out | sipfork | 350 | 350 | 350 | 350 | 20 |" in md


def test_report_reads_latency_results_written_before_interleaving():
    results = _results()
    results["proxies"]["kamailio"]["latency"] = [_latency_run(100)]
    results["proxies"]["sipfork"]["latency"] = [_latency_run(300)]
    md = report.markdown(results, {})
    assert "| INVITE in -> first forked INVITE out | sipfork | 300 | 300 | 300 | 300 | 10 |" in md
    assert "Runs not interleaved" in md and "Runs interleaved" not in md


class _FakeProxy:
    def __init__(self, name: str, cpu: list[float]):
        self.name, self.cpu, self.stopped = name, cpu, False

    def start(self) -> None:
        pass

    def cpu_seconds(self) -> float:
        return self.cpu[0]

    def alive(self) -> bool:
        return not self.stopped

    def log_tail(self, _n: int) -> str:
        return ""

    def stop(self) -> None:
        self.stopped = True


def test_latency_runs_alternate_with_both_proxies_up(monkeypatch, tmp_path):
    cpu = [0.0]  # every proxy's CPU: each run adds 0.5 s
    made: dict[str, _FakeProxy] = {}
    calls: list[tuple[str, int, set[str]]] = []

    def make_proxy(name, *_a, **_k):
        made[name] = _FakeProxy(name, cpu)
        return made[name]

    def latency_run(proxy, *_a, run, **_k):
        calls.append((proxy.name, run, {n for n, p in made.items() if p.alive()}))
        cpu[0] += 0.5
        if proxy.name == "sipfork" and run == 2:
            raise experiments.BenchError("sipfork: lost calls")
        return {"summary": {}}

    monkeypatch.setattr(runner, "make_proxy", make_proxy)
    monkeypatch.setattr(runner.proxies, "git_revision", lambda: "abc")
    monkeypatch.setattr(experiments, "register_contacts", lambda *a, **k: {})
    monkeypatch.setattr(experiments, "latency_run", latency_run)
    opts = runner.Options(latency_runs=3)
    by_proxy, info = runner.latency_interleaved(["kamailio", "sipfork"], Layout(), tmp_path, opts)
    assert [(n, r) for n, r, _ in calls] == [
        ("kamailio", 0), ("sipfork", 0), ("kamailio", 1), ("sipfork", 1), ("kamailio", 2), ("sipfork", 2)
    ]  # fmt: skip
    assert all(up == {"kamailio", "sipfork"} for _, _, up in calls)  # both up throughout
    assert info["interleaved"] and info["order"] == ["kamailio 1", "sipfork 1", "kamailio 2", "sipfork 2", "kamailio 3"]
    k, s = by_proxy["kamailio"]["latency"], by_proxy["sipfork"]["latency"]
    assert [(r["run"], r["position"]) for r in k] == [(1, 1), (2, 3), (3, 5)]
    assert [(r["run"], r["position"]) for r in s] == [(1, 2), (2, 4)]
    assert k[0]["idle_proxies_cpu_s"] == {"sipfork": 0.5}
    assert by_proxy["sipfork"]["error"] == "sipfork: lost calls" and "error" not in by_proxy["kamailio"]
    assert all(p.stopped for p in made.values())
