"""python -m benchmarks run [--quick | --smoke] ...  (see benchmarks/README.md)"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from . import runner
from .layout import MAX_CALLERS


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def _callers(text: str) -> int:
    n = int(text)
    if not 1 <= n <= MAX_CALLERS:
        raise argparse.ArgumentTypeError(f"from 1 to {MAX_CALLERS} callers")
    return n


def _workers(text: str) -> list[int]:
    counts = _ints(text)
    if not counts or any(not 1 <= n <= 256 for n in counts):
        raise argparse.ArgumentTypeError("comma-separated worker counts from 1 to 256, e.g. 1,2")
    return counts


def _names(allowed: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        names = [x.strip() for x in text.split(",") if x.strip()]
        bad = [n for n in names if n not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)}; choose from {', '.join(allowed)}")
        return names

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="install what is missing, measure, write RESULTS.md")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short steps, one latency run, 10k contacts (a few minutes)")
    mode.add_argument("--smoke", action="store_true", help="sipfork only: 3 contacts, ~20 calls, check none failed (seconds)")
    run.add_argument("--proxies", type=_names(runner.PROXY_NAMES), help="comma-separated: sipfork,kamailio (default both)")
    run.add_argument("--skip", type=_names(runner.PARTS), default=[], help="comma-separated parts to leave out: latency,throughput,memory,micro")
    run.add_argument("--only", type=_names(runner.PARTS), help="comma-separated parts to run (instead of all)")
    run.add_argument("--rates", type=_floats, help="throughput steps in calls/s (default 100,200,400,800,1200,1600,...,4000)")
    run.add_argument("--step-seconds", type=float, help="length of one throughput step (default 20, quick 5)")
    run.add_argument("--latency-runs", type=int, help="latency runs per proxy (default 5, quick 1)")
    run.add_argument("--latency-calls", type=int, help="calls per latency run (default 200, quick 100)")
    run.add_argument("--latency-rate", type=float, help="calls/s in the latency runs (default 10)")
    run.add_argument("--callers", type=_callers, help=f"SIPp callers sharing the offered rate of a throughput step, each from its own port (default {runner.DEFAULT_CALLERS}; --smoke: {runner.SMOKE_CALLERS})")
    run.add_argument("--latency-callers", type=_callers, help="SIPp callers in the latency runs (default 1)")
    run.add_argument("--memory-counts", type=_ints, help="registered contacts at which memory is measured (default 10000,100000; quick 10000)")
    run.add_argument("--memory-budget", type=float, help="seconds allowed for registering per proxy (default 240, quick 90)")
    run.add_argument("--register-rate", type=float, help="REGISTER offered per second (default 20000; at most --register-limit outstanding)")
    run.add_argument("--register-limit", type=int, help="outstanding registrations at most (default 50)")
    run.add_argument("--memory-settle", type=float, help="seconds to wait after the last registrations before measuring again (default 35: REGISTER transactions end)")
    run.add_argument("--sipfork-data-dir", type=Path, help="put sipfork's data_dir (SQLite) here, e.g. /dev/shm/sipfork-bench (default: under the output directory)")
    run.add_argument("--sipfork-workers", type=_workers, help="comma-separated: measure sipfork's throughput with `workers = N` for each N (default 1,2); latency and memory use the first")
    run.add_argument("--smoke-calls", type=int, default=20, help="calls in --smoke (default 20)")
    run.add_argument("--no-install", action="store_true", help="do not apt-get / pip install anything")
    run.add_argument("--no-report", action="store_true", help="do not write RESULTS.md and the plots")
    run.add_argument("--out", type=Path, help="output directory (default benchmarks/out/<date-time>)")

    rep = sub.add_parser("report", help="write RESULTS.md and the plots again from a results.json")
    rep.add_argument("results", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.command == "report":
        from . import report

        print(report.write(json.loads(args.results.read_text())))
        return 0

    if args.smoke:
        summary = runner.run_smoke(calls=args.smoke_calls, callers=args.callers or runner.SMOKE_CALLERS)
        runner.print_smoke(summary)
        return 0 if summary.get("ok") else 1

    opts = runner.Options(command="python -m benchmarks " + shlex.join(argv))
    if args.quick:
        opts = runner.quick(opts)
    if args.proxies:
        opts.proxies = args.proxies
    parts = args.only or list(runner.PARTS)
    opts.parts = [p for p in parts if p not in args.skip]
    for attr, value in (
        ("rates", args.rates),
        ("step_s", args.step_seconds),
        ("latency_runs", args.latency_runs),
        ("latency_calls", args.latency_calls),
        ("latency_rate", args.latency_rate),
        ("latency_callers", args.latency_callers),
        ("callers", args.callers),
        ("memory_counts", args.memory_counts),
        ("memory_budget_s", args.memory_budget),
        ("register_rate", args.register_rate),
        ("register_limit", args.register_limit),
        ("sipfork_workers", args.sipfork_workers),
        ("memory_settle_s", args.memory_settle),
        ("sipfork_data_dir", args.sipfork_data_dir),
        ("out", args.out),
    ):
        if value is not None:
            setattr(opts, attr, value)
    opts.install = not args.no_install
    opts.write_report = not args.no_report
    try:
        runner.run_benchmark(opts)
    except runner.experiments.BenchError as e:
        print(f"benchmark: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
