"""RESULTS.md and the PNG plots from one run's results.json.

Every figure of sipfork is shown beside Kamailio's from the same run, and as
the ratio sipfork / Kamailio (above 1: sipfork is slower, costs more CPU or
memory; for rates, above 1: sipfork sustains more).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from .capture import METRICS
from .layout import BENCH_DIR, PLOTS_DIR, RESULTS_MD

PROXIES = ("sipfork", "kamailio")
COLORS = {"sipfork": "tab:blue", "kamailio": "tab:orange"}


def write(results: dict, path: Path = RESULTS_MD, plots_dir: Path = PLOTS_DIR) -> Path:
    plots_dir.mkdir(parents=True, exist_ok=True)
    figures = plots(results, plots_dir)
    rel = {k: v.relative_to(path.parent).as_posix() for k, v in figures.items()}
    path.write_text(markdown(results, rel))
    return path


# --- numbers -------------------------------------------------------------------


def _fmt(x, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def _switches(pair) -> str:
    """A step's context switches per call, voluntary / involuntary."""
    return "–" if not pair else f"{pair[0]:.1f} / {pair[1]:.1f}"


def _ratio(a, b, digits: int = 2) -> str:
    if a is None or b is None or not b or any(isinstance(v, float) and math.isnan(v) for v in (a, b)):
        return "–"
    return f"{a / b:.{digits}f}×"


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else None


def latency_table(results: dict) -> dict[str, dict[str, dict[str, float | None]]]:
    """metric -> proxy -> {p50, p90, p99, max}: the median of each over the runs."""
    out: dict = {}
    for metric in METRICS:
        out[metric] = {}
        for name in PROXIES:
            runs = results["proxies"].get(name, {}).get("latency") or []
            if not runs:
                continue
            out[metric][name] = {
                q: _median([r["summary"][metric][q] for r in runs]) for q in ("p50", "p90", "p99", "max")
            }
            out[metric][name]["n"] = sum(r["summary"][metric]["n"] for r in runs)
    return out


def _latency_order(results: dict, present: list[str]) -> list[str]:
    """How the latency runs were ordered, and, when they alternated, each
    pair's p50 of the last forked INVITE with its ratio (drift shows here)."""
    info = results["meta"].get("latency") or {}
    if not info.get("interleaved"):
        if len([p for p in present if results["proxies"][p].get("latency")]) > 1:
            return [
                "",
                (
                    "Runs not interleaved: all of one proxy's runs, then all of the other's "
                    "(each proxy running alone), so drift of the machine's load goes into the ratios."
                ),
            ]
        return []
    lines = [
        "",
        (
            f"Runs interleaved, in this order: {', '.join(info.get('order') or []) or 'none'}. "
            "Both proxies were running (each registered with the three contacts) from before the "
            "first run to after the last; each was idle during the other's runs."
        ),
    ]
    runs = {p: {r.get("run"): r for r in results["proxies"][p].get("latency") or []} for p in present}
    idle = [
        v for p in present for r in runs[p].values() for v in (r.get("idle_proxies_cpu_s") or {}).values()
    ]
    if idle:
        lines[-1] += f" CPU of the idle proxy over a run: at most {max(idle):.2f} s."
    if all(p in runs for p in PROXIES) and runs["sipfork"] and runs["kamailio"]:
        metric = "invite_last_branch"
        lines += [
            "",
            f"Each pair of runs, p50 of {METRICS[metric]} (µs):",
            "",
            "| run | kamailio | sipfork | ratio |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for n in sorted(set(runs["kamailio"]) | set(runs["sipfork"]), key=lambda x: x or 0):
            k = runs["kamailio"].get(n, {}).get("summary", {}).get(metric, {}).get("p50")
            sf = runs["sipfork"].get(n, {}).get("summary", {}).get(metric, {}).get("p50")
            lines.append(f"| {n} | {_fmt(k)} | {_fmt(sf)} | {_ratio(sf, k)} |")
    return lines


def _present(results: dict) -> list[str]:
    return [p for p in PROXIES if p in results.get("proxies", {})]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def throughput_series(results: dict) -> list[dict]:
    """Every throughput run of the report: label (`sipfork`, `sipfork ×2`,
    `kamailio`), proxy, workers, steps, max_clean_rate, error; sipfork's
    first. Reads results.json from before sipfork was measured with several
    worker counts (one "throughput" list per proxy) too."""
    out = []
    for p in _present(results):
        r = results["proxies"][p]
        runs = r.get("throughput_runs")
        if runs is None and "throughput" in r:
            runs = [{"label": p, "workers": None, "steps": r["throughput"], "max_clean_rate": r.get("max_clean_rate")}]
        for run in runs or []:
            out.append({**run, "proxy": p, "label": run.get("label") or p, "steps": run.get("steps") or []})
    return out


def _color(label: str) -> str:
    return COLORS.get(label) or ("tab:purple" if label.startswith("sipfork") else "tab:gray")


def markdown(results: dict, figures: dict[str, str]) -> str:
    meta = results["meta"]
    m = meta["machine"]
    opts = meta["options"]
    present = _present(results)
    both = all(p in present for p in PROXIES)
    lines = [
        "# sipfork benchmark results",
        "",
        "sipfork (pure-Python registrar and forking proxy) beside Kamailio doing the same job:",
        "registrar, parallel forking of each INVITE to every registered contact, Record-Route.",
        "How it is measured: [README.md](README.md). Ratios are sipfork / Kamailio from this same run.",
        "",
        f"- Date: {meta['date']}",
        f"- Command: `{meta['command']}`" + (" (quick mode)" if opts.get("quick") else ""),
        f"- Machine: {m['nproc']} cores, {m['cpu']}, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}" + (f" ({m['python_path']})" if m.get("python_path") else ""),
        f"- Load before: `{meta['uptime_before']}`",
        f"- Load after: `{meta.get('uptime_after', '?')}`",
        f"- Versions: sipfork {meta['versions']['sipfork']} (git {meta['versions']['git']}), "
        f"{meta['versions'].get('kamailio') or 'Kamailio not run'}, SIPp {meta['versions']['sipp']}",
    ]
    workers = opts.get("sipfork_workers")
    if "sipfork" in present and workers:
        workers = workers if isinstance(workers, list) else [workers]  # one number before 1,2
        lines.append(
            f"- sipfork's `[proxy] workers`: {workers[0]} for latency and memory; throughput with "
            + ", ".join(str(w) for w in workers)
        )
    lines.append("")
    warnings = _warnings(results)
    if warnings:
        lines += ["## Read this first", ""] + [f"- {w}" for w in warnings] + [""]

    # latency
    if any(results["proxies"].get(p, {}).get("latency") for p in present):
        lines += [
            "## Fork latency at low load",
            "",
            f"{opts['latency_calls']} calls at {opts['latency_rate']:g} calls/s, "
            f"{opts['latency_runs']} run(s) per proxy, "
            f"{_plural(opts.get('latency_callers', 1), 'SIPp caller')}; from a packet capture on loopback, matched by "
            "Call-ID and Via branch. Microseconds; each percentile is the median over the runs.",
            "",
            "| measure | proxy | p50 | p90 | p99 | max | samples |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        table = latency_table(results)
        for metric, label in METRICS.items():
            row = table[metric]
            for name in present:
                if name in row:
                    r = row[name]
                    lines.append(
                        f"| {label} | {name} | {_fmt(r['p50'])} | {_fmt(r['p90'])} | {_fmt(r['p99'])} | {_fmt(r['max'])} | {r['n']} |"
                    )
            if both and all(p in row for p in PROXIES):
                s, k = row["sipfork"], row["kamailio"]
                lines.append(
                    f"| | **ratio** | {_ratio(s['p50'], k['p50'])} | {_ratio(s['p90'], k['p90'])} | "
                    f"{_ratio(s['p99'], k['p99'])} | {_ratio(s['max'], k['max'])} | |"
                )
        lines.append("")
        for name in present:
            runs = results["proxies"][name].get("latency") or []
            if runs:
                comp = [r["completeness"] for r in runs]
                calls = sum(c["calls"] for c in comp)
                full = sum(next(v for k, v in c.items() if k.endswith("_branches")) for c in comp)
                cancels = sum(next(v for k, v in c.items() if k.endswith("_cancels")) for c in comp)
                failed = sum(r["batch"]["failed"] for r in runs)
                lines.append(
                    f"- {name}: {calls} calls captured, {full} forked to all 3 contacts, "
                    f"{cancels} with both CANCELs, {failed} failed calls."
                )
        lines += _latency_order(results, present)
        if "latency" in figures:
            lines += ["", f"![latency distributions]({figures['latency']})"]
        lines.append("")

    # throughput
    series = throughput_series(results)
    if any(t["steps"] for t in series):
        callers = opts.get("callers", 1)
        lines += [
            "## Throughput and CPU per call",
            "",
            f"Steps of {opts['step_s']:g} s; "
            + (
                f"the offered rate is split over {callers} SIPp callers, each from its own port on "
                "127.0.0.1 (the same callers for every proxy)"
                if callers > 1
                else "one SIPp caller places the calls"
            )
            + "; a step is clean with zero failed calls and zero "
            f"retransmissions in every SIPp process (the {_plural(callers, 'caller')} and the 3 contacts); "
            "stepping stops after the first unclean step. CPU per call: utime+stime of all the proxy's "
            "processes over the step ÷ calls completed. SIPp runs on the same "
            f"{m['nproc']} cores (its CPU is shown too). "
            "Switches/call: the proxy's context switches per call from /proc/<pid>/status, voluntary "
            "(it waited for input) / involuntary (the kernel ran another task in its place: mostly a SIPp "
            "process one of its datagrams had just woken on the same core; each costs the proxy its caches). "
            "UDP drops: datagrams the kernel dropped on a full socket receive buffer during the step, "
            "on the proxy's own sockets / on any socket of the machine (SIPp's included).",
            "",
        ]
        multi = [t for t in series if (t.get("workers") or 1) > 1]
        if multi:
            text = (
                ", ".join(f"`{t['label']}`" for t in multi)
                + ": sipfork with `[proxy] workers = "
                + "/".join(str(t["workers"]) for t in multi)
                + "`, a proxy of its own started for these steps. The workers share the port through "
                "SO_REUSEPORT, which picks a worker by the sender's address and port: each caller's "
                "calls stay on one worker."
            )
            spread = (meta.get("callers") or {}).get("spread") or {}
            if spread.get("sockets"):
                counts = [spread["sockets"].count(k) for k in range(spread["workers"])]
                text += (
                    f" The callers' ports ({', '.join(map(str, spread['ports']))}) were chosen so that "
                    f"the kernel spreads them over a group of {spread['workers']} sockets as evenly as "
                    f"it can ({' + '.join(map(str, counts))} callers), as many phones would be; "
                    "the CPU of each worker is below the table."
                )
            elif spread.get("error"):
                text += f" The callers were not spread over the workers ({spread['error']})."
            lines += [text, ""]
        for t in series:
            text = f"- Highest clean rate, {t['label']}: **{_fmt(t.get('max_clean_rate'))} calls/s**"
            if t.get("error"):
                text += f" (stopped: {t['error'].splitlines()[0][:200]})"
            lines.append(text)
        kam = next((t for t in series if t["proxy"] == "kamailio" and t["steps"]), None)
        ours = [t for t in series if t["proxy"] == "sipfork" and (t["steps"] or t.get("error"))]
        if kam:
            for t in ours:
                lines.append(
                    f"- Ratio {t['label']} / Kamailio: {_ratio(t.get('max_clean_rate'), kam.get('max_clean_rate'))}"
                )
        if len(ours) > 1:
            for t in ours[1:]:
                lines.append(
                    f"- Ratio {t['label']} / {ours[0]['label']}: "
                    f"{_ratio(t.get('max_clean_rate'), ours[0].get('max_clean_rate'))}"
                )
        lines += [
            "",
            "| calls/s | proxy | clean | completed | failed | retrans. | CPU ms/call | proxy CPU s | SIPp CPU s | switches/call vol. / invol. | UDP drops proxy / all | wall s |",
            "| ---: | --- | :---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        by_rate: dict[float, dict[str, dict]] = {}
        for t in series:
            for st in t["steps"]:
                by_rate.setdefault(st["rate"], {})[t["label"]] = st
        for rate in sorted(by_rate):
            for t in series:
                st = by_rate[rate].get(t["label"])
                if st:
                    lines.append(
                        f"| {rate:g} | {t['label']} | {'yes' if st['clean'] else '**no**'} | {st['completed']}/{st['calls']} | {st['failed']} | "
                        f"{st['retransmissions']} | {_fmt(st['cpu_per_call_ms'], 3)} | {_fmt(st['proxy_cpu_s'], 2)} | "
                        f"{_fmt(st['sipp_cpu_s'], 2)} | {_switches(st.get('switches_per_call'))} | "
                        f"{st.get('proxy_udp_drops', '–')} / {st.get('udp_rcvbuf_drops', '–')} | {_fmt(st['wall_s'], 1)} |"
                    )
            k = by_rate[rate].get(kam["label"]) if kam else None
            for t in ours:
                sf = by_rate[rate].get(t["label"])
                if k and sf:
                    lines.append(
                        f"| {rate:g} | **{t['label']} / kamailio** | | | | | {_ratio(sf['cpu_per_call_ms'], k['cpu_per_call_ms'])} | "
                        f"{_ratio(sf['proxy_cpu_s'], k['proxy_cpu_s'])} | | | | |"
                    )
        lines.append("")
        for t in multi:
            split = []
            for st in t["steps"]:
                workers = [pc["cpu_s"] for pc in st.get("proxy_cpu_by_process") or [] if pc["role"] == "worker"]
                if workers:
                    split.append(f"{st['rate']:g}/s: " + " + ".join(f"{w:.2f}" for w in workers))
            if split:
                lines.append(
                    f"- {t['label']}, CPU seconds of each worker process over the step (the rest of the "
                    "proxy's CPU is the supervisor's and multiprocessing's resource tracker's): "
                    + "; ".join(split) + "."
                )
        if "cpu" in figures:
            lines += ["", f"![CPU per call against rate]({figures['cpu']})"]
        lines.append("")

    # memory
    if any(results["proxies"].get(p, {}).get("memory") for p in present):
        lines += [
            "## Memory and registrations",
            "",
            "Each proxy starts knowing N users (sipfork: N `[[user]]` entries, all with MD5 digest; "
            "Kamailio: one password for everyone, no user list), then SIPp registers one contact "
            "per user (REGISTER, 401, REGISTER with credentials, 200), at most "
            f"{opts['register_limit']} outstanding. Memory is the PSS summed over all the proxy's "
            "processes (Kamailio's workers share memory; RSS would count it once per process); "
            "measured right after each stage (REGISTER transactions still held, RFC 3261 Timer J) and "
            "once more when they have ended. sipfork commits each binding to SQLite (WAL, "
            "synchronous=FULL) before its 200 OK"
            + (f" (data_dir {opts['sipfork_data_dir']})" if opts.get("sipfork_data_dir") else " (data_dir on disk)")
            + "; Kamailio keeps them in memory only (db_mode 0).",
            "",
            "| contacts | proxy | PSS MiB | RSS main MiB | processes | REGISTER/s | failed | retrans. |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        stages: dict[int, dict[str, dict]] = {}
        for p in present:
            mem = results["proxies"][p].get("memory") or {}
            if "baseline" in mem:
                stages.setdefault(0, {})[p] = {"memory": mem["baseline"], "registration": None}
            for st in mem.get("stages", []):
                stages.setdefault(st["registered_total"], {})[p] = st
        settled = {
            p: results["proxies"][p]["memory"]["settled"]
            for p in present
            if (results["proxies"][p].get("memory") or {}).get("settled")
        }
        for count in sorted(stages):
            for p in present:
                st = stages[count].get(p)
                if st:
                    reg = st["registration"] or {}
                    mm = st["memory"]
                    lines.append(
                        f"| {count:,} | {p} | {mm['pss_sum_kib'] / 1024:.1f} | {mm['rss_main_kib'] / 1024:.1f} | "
                        f"{mm['processes']} | {_fmt(reg.get('per_second'))} | {reg.get('failed', '–')} | "
                        f"{reg.get('retransmissions', '–')} |"
                    )
            if both and all(p in stages[count] for p in PROXIES):
                s, k = stages[count]["sipfork"], stages[count]["kamailio"]
                sr, kr = s["registration"] or {}, k["registration"] or {}
                lines.append(
                    f"| {count:,} | **ratio** | {_ratio(s['memory']['pss_sum_kib'], k['memory']['pss_sum_kib'])} | | | "
                    f"{_ratio(sr.get('per_second'), kr.get('per_second'))} | | |"
                )
        for p in present:
            if p in settled:
                st = settled[p]
                mm = st["memory"]
                lines.append(
                    f"| {st['registered_total']:,}, {st['after_s']:g} s later | {p} | {mm['pss_sum_kib'] / 1024:.1f} | "
                    f"{mm['rss_main_kib'] / 1024:.1f} | {mm['processes']} | | | |"
                )
        if both and all(p in settled for p in PROXIES) and (
            settled["sipfork"]["registered_total"] == settled["kamailio"]["registered_total"]
        ):
            lines.append(
                f"| {settled['sipfork']['registered_total']:,}, later | **ratio** | "
                f"{_ratio(settled['sipfork']['memory']['pss_sum_kib'], settled['kamailio']['memory']['pss_sum_kib'])} | | | | | |"
            )
        lines.append("")
        lines += _growth_table(results, present)
        for p in present:
            mem = results["proxies"][p].get("memory") or {}
            if mem.get("start_s") is not None:
                lines.append(f"- {p}: start-up with {mem['users_configured']:,} users configured took {mem['start_s']} s.")
            if mem.get("stopped_early"):
                lines.append(f"- {p}: {mem['stopped_early']}.")
            if mem.get("error"):
                lines.append(f"- {p}: memory test failed: {mem['error'][:300]}")
        if "memory" in figures:
            lines += ["", f"![memory against contacts]({figures['memory']})"]
        lines.append("")

    # micro
    micro = results.get("micro")
    if micro:
        lines += ["## Micro-benchmarks (pure layers, no sockets)", ""]
        if micro.get("benchmarks"):
            lines += [
                "pytest-benchmark on `benchmarks/test_micro.py`.",
                "",
                "| benchmark | median µs | min µs | ops/s | rounds |",
                "| --- | ---: | ---: | ---: | ---: |",
            ]
            for b in micro["benchmarks"]:
                lines.append(
                    f"| {b['name']} | {b['median_us']:.1f} | {b['min_us']:.1f} | {b['ops']:,.0f} | {b['rounds']} |"
                )
        else:
            tail = (micro.get("output_tail") or "").strip().splitlines()[-3:]
            lines.append("Not measured: " + " / ".join(tail))
        lines.append("")

    lines += _errors_section(results)
    return "\n".join(lines).rstrip() + "\n"


def memory_growth(mem: dict) -> dict[str, dict]:
    """Bytes of PSS per registered contact, three ways (each only when its
    measurements are there):

    - "from_start": (last stage - start) / contacts at the last stage, where
      start is measured once the proxy has read its configuration;
    - "from_start_settled": the same with the measurement `settle_s` later;
    - "between": (last stage - first stage) / (contacts between them), which
      memory freed after start-up (and reused by the first registrations)
      does not flatter.
    Each: {"bytes", "from", "to"} (contact counts)."""
    out: dict[str, dict] = {}
    stages = mem.get("stages") or []
    base = mem.get("baseline")
    if stages and base:
        last = stages[-1]
        n = last["registered_total"]
        if n:
            out["from_start"] = {
                "bytes": (last["memory"]["pss_sum_kib"] - base["pss_sum_kib"]) * 1024 / n, "from": 0, "to": n,
            }  # fmt: skip
            settled = mem.get("settled")
            if settled and settled.get("registered_total") == n:
                out["from_start_settled"] = {
                    "bytes": (settled["memory"]["pss_sum_kib"] - base["pss_sum_kib"]) * 1024 / n,
                    "from": 0, "to": n, "after_s": settled["after_s"],
                }  # fmt: skip
    if len(stages) >= 2:
        first, last = stages[0], stages[-1]
        n = last["registered_total"] - first["registered_total"]
        if n > 0:
            out["between"] = {
                "bytes": (last["memory"]["pss_sum_kib"] - first["memory"]["pss_sum_kib"]) * 1024 / n,
                "from": first["registered_total"], "to": last["registered_total"],
            }  # fmt: skip
    return out


def _growth_table(results: dict, present: list[str]) -> list[str]:
    growth = {p: memory_growth(results["proxies"][p].get("memory") or {}) for p in present}
    if not any(growth.values()):
        return []
    both = all(p in growth for p in PROXIES)

    def span(key: str) -> str:
        spans = {(g[key]["from"], g[key]["to"]) for g in growth.values() if key in g}
        if len(spans) != 1:
            return "the proxies' own counts (they differ)"
        a, b = spans.pop()
        return f"{a:,} → {b:,} contacts, ÷ {b - a:,}"

    rows = [
        ("from_start", f"from start-up, right after registering ({span('from_start')})"),
        ("from_start_settled", f"from start-up, once the REGISTER transactions ended ({span('from_start_settled')})"),
        ("between", f"**between the stages**, right after registering ({span('between')})"),
    ]
    header = "| PSS growth per registered contact, bytes | " + " | ".join(present) + (" | ratio |" if both else " |")
    lines = [header, "| --- |" + " ---: |" * (len(present) + (1 if both else 0))]
    for key, label in rows:
        if not any(key in g for g in growth.values()):
            continue
        cells = [_fmt(growth[p][key]["bytes"]) if key in growth[p] else "–" for p in present]
        ratio = []
        if both:
            s, k = growth["sipfork"].get(key), growth["kamailio"].get(key)
            ratio = [_ratio(s and s["bytes"], k and k["bytes"])]
        lines.append(f"| {label} | " + " | ".join(cells + ratio) + " |")
    lines += [
        "",
        "Start-up is measured once the proxy has read its configuration (N users). Memory it "
        "freed after that is reused by the first registrations without growing the process, so "
        "the growth from start-up flatters a proxy that frees much at start (sipfork parses N "
        "`[[user]]` entries in Python). The growth between the two stages counts only the "
        "registrations after the first stage, so freed memory flatters it only as far as the first "
        "stage had not used it up yet (when memory did not grow at all up to the first stage, "
        "some may be left). PSS, as in the table above: Kamailio "
        "keeps registrations in shared memory, which one process's RSS does not show; for "
        "sipfork's single process PSS and RSS agree. Both stages are measured right after "
        "registering, with the REGISTER transactions of the last 32 s still held (RFC 3261 Timer J).",
        "",
    ]
    return lines


def _warnings(results: dict) -> list[str]:
    out = []
    meta = results["meta"]
    load = _load1(meta.get("uptime_before", ""))
    nproc = meta["machine"].get("nproc") or 1
    if load is not None and load > 0.3 * nproc:
        out.append(
            f"The machine was busy before the run (1-minute load {load:.2f} on {nproc} cores): "
            "other work competed for the CPU, so latencies and the highest rate are pessimistic."
        )
    latency = meta.get("latency") or {}
    for key in ("uptime_before", "uptime_after"):
        load = _load1(latency.get(key, ""))
        if load is not None and load > 1.2 * nproc:
            out.append(f"Load was {load:.2f} around the latency runs ({key.replace('_', ' ')}).")
    for p in _present(results):
        r = results["proxies"][p]
        for key in ("uptime_before", "uptime_after"):
            load = _load1(r.get(key, ""))
            if load is not None and load > 1.2 * nproc:
                out.append(f"Load was {load:.2f} around the {p} measurements ({key.replace('_', ' ')}).")
        if r.get("error"):
            out.append(f"{p}: {r['error'].splitlines()[0][:300]}")
    for t in throughput_series(results):
        err = t.get("error")
        if err and err != results["proxies"][t["proxy"]].get("error"):
            out.append(f"{t['label']}: {err.splitlines()[0][:300]}")
    revs = {results["proxies"][p].get(k) for p in _present(results) for k in ("git", "latency_git")} - {None}
    if revs and revs != {meta["versions"]["git"]}:
        out.append(
            "The repository moved during the run (sipfork is installed editable): "
            + ", ".join(
                f"{p} measured at git {results['proxies'][p].get('git')}"
                + (
                    f" (latency at {results['proxies'][p]['latency_git']})"
                    if results["proxies"][p].get("latency_git") not in (None, results["proxies"][p].get("git"))
                    else ""
                )
                for p in _present(results)
            )
            + "."
        )
    if not all(p in results["proxies"] for p in PROXIES):
        missing = [p for p in PROXIES if p not in results["proxies"]]
        out.append(f"Not measured in this run: {', '.join(missing)} (no ratios).")
    return out


def _load1(uptime: str) -> float | None:
    if "load average:" not in uptime:
        return None
    try:
        return float(uptime.split("load average:")[1].split(",")[0])
    except ValueError:
        return None


def _errors_section(results: dict) -> list[str]:
    examples: dict[str, list[str]] = {}  # label -> SIPp's errors, first few
    for p in _present(results):
        for run in results["proxies"][p].get("latency") or []:
            examples.setdefault(p, []).extend(run["batch"].get("first_errors") or [])
    for t in throughput_series(results):
        found = examples.setdefault(t["label"], [])
        for s in t["steps"]:
            if not s["clean"]:
                found += s.get("first_errors") or []
                causes: dict[str, int] = {}
                # results.json before several callers had one "caller"
                for c in [*(s.get("callers") or [s["caller"]]), *s["contacts"]]:
                    for k, v in c["failed_by_cause"].items():
                        causes[k] = causes.get(k, 0) + v
                if causes:
                    found.insert(
                        0, f"at {s['rate']:g} calls/s failed calls by cause: "
                        + ", ".join(f"{k} {v}" for k, v in sorted(causes.items()))
                    )
    lines = []
    for label, found in examples.items():
        if found:
            lines += [f"### What SIPp reported for {label}", "", "```"]
            for e in found[:4]:
                lines += [e[:700], ""]
            lines += ["```", ""]
    return (["## Failures seen", ""] + lines) if lines else []


# --- plots ---------------------------------------------------------------------


def plots(results: dict, plots_dir: Path) -> dict[str, Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    out: dict[str, Path] = {}
    present = _present(results)

    # latency: empirical CDFs, one panel per measure
    if any(results["proxies"].get(p, {}).get("latency") for p in present):
        metrics = list(METRICS)
        fig, axes = plt.subplots(2, 3, figsize=(15, 7.5), sharex=False)
        axes.flat[-1].set_axis_off()
        table = latency_table(results)
        for ax, metric in zip(axes.flat, metrics):
            for p in present:
                samples = []
                for run in results["proxies"][p].get("latency") or []:
                    samples += run["samples"][metric]
                if not samples:
                    continue
                s = sorted(samples)
                ys = [(i + 1) / len(s) for i in range(len(s))]
                ax.step(s, ys, where="post", label=p, color=_color(p))
            title = METRICS[metric]
            row = table.get(metric, {})
            if all(p in row for p in PROXIES) and row["kamailio"]["p50"]:
                title += f"\np50 ratio sipfork/Kamailio {row['sipfork']['p50'] / row['kamailio']['p50']:.2f}×"
            ax.set_title(title, fontsize=9)
            ax.set_xscale("log")
            ax.set_xlabel("µs")
            ax.set_ylabel("fraction of calls")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8, loc="lower right")
        fig.suptitle(
            f"Fork latency at {results['meta']['options']['latency_rate']:g} calls/s (packet capture)",
            fontsize=11,
        )
        fig.tight_layout()
        out["latency"] = plots_dir / "latency.png"
        fig.savefig(out["latency"], dpi=110)
        plt.close(fig)

    # CPU per call against rate, and the ratio
    series = throughput_series(results)
    if any(t["steps"] for t in series):
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        points = {}
        for t in series:
            steps = [s for s in t["steps"] if s["cpu_per_call_ms"]]
            if not steps:
                continue
            xs = [s["rate"] for s in steps]
            ys = [s["cpu_per_call_ms"] for s in steps]
            points[t["label"]] = dict(zip(xs, ys))
            ax.plot(xs, ys, marker="o", label=t["label"], color=_color(t["label"]))
            bad = [s for s in steps if not s["clean"]]
            if bad:
                ax.scatter([s["rate"] for s in bad], [s["cpu_per_call_ms"] for s in bad],
                           marker="x", s=80, color="red", zorder=5)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        from matplotlib.ticker import ScalarFormatter

        for axis in (ax.xaxis, ax.yaxis, ax2.xaxis):
            axis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("offered calls/s")
        ax.set_ylabel("proxy CPU ms per call")
        ax.set_title("CPU per call (x: step with failures or retransmissions)", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        kam = points.get("kamailio")
        ours = [t["label"] for t in series if t["proxy"] == "sipfork" and t["label"] in points]
        if kam and ours:
            for label in ours:
                common = sorted(set(points[label]) & set(kam))
                ax2.plot(common, [points[label][r] / kam[r] for r in common],
                         marker="o", color=_color(label), label=f"{label} / kamailio")  # fmt: skip
            ax2.set_xscale("log")
            ax2.axhline(1, color="grey", lw=0.8)
            ax2.set_title("ratio to Kamailio (CPU per call)", fontsize=9)
            ax2.set_xlabel("offered calls/s")
            ax2.grid(True, which="both", alpha=0.3)
            ax2.legend(fontsize=8)
        else:
            ax2.set_axis_off()
            ax2.text(0.5, 0.5, "ratio needs both proxies", ha="center", va="center")
        fig.tight_layout()
        out["cpu"] = plots_dir / "cpu_per_call.png"
        fig.savefig(out["cpu"], dpi=110)
        plt.close(fig)

    # memory against registered contacts
    if any((results["proxies"].get(p, {}).get("memory") or {}).get("stages") for p in present):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for p in present:
            mem = results["proxies"][p].get("memory") or {}
            if not mem.get("stages"):
                continue
            xs = [0] + [s["registered_total"] for s in mem["stages"]]
            ys = [mem["baseline"]["pss_sum_kib"] / 1024] + [s["memory"]["pss_sum_kib"] / 1024 for s in mem["stages"]]
            ax.plot(xs, ys, marker="o", label=p, color=_color(p))
        ax.set_xlabel("registered contacts")
        ax.set_ylabel("PSS of all proxy processes, MiB")
        ax.set_title("Memory against registrations", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        out["memory"] = plots_dir / "memory.png"
        fig.savefig(out["memory"], dpi=110)
        plt.close(fig)
    return out


__all__ = ["write", "markdown", "plots", "BENCH_DIR"]
