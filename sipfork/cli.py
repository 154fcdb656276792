"""The command line: run, check, registrations, explain, reload."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sipfork.config import Config, ConfigError, Target, load_config

DEFAULT_CONFIG = "proxy.toml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sipfork", description="SIP registrar and forking proxy for a small office")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="proxy.toml to use (default: %(default)s)")
        return sub

    run = command("run", "run the proxy")
    run.add_argument("-v", "--verbose", action="store_true", help="log every transaction decision (debug level)")
    # Test-only hook: run as if the wall clock showed this local time, so
    # schedule and date rules can be tested without waiting for the hour.
    run.add_argument("--clock", help=argparse.SUPPRESS)
    command("check", "validate the configuration and print what it says")
    command("registrations", "list the registered contacts")
    explain = command("explain", "show what would ring for a call")
    explain.add_argument("--to", required=True, help="the dialled number, extension or user")
    explain.add_argument("--from", dest="caller", default=None, help="the caller's number, or 'anonymous'")
    explain.add_argument("--at", default=None, help='local time of the call, "YYYY-MM-DD HH:MM" (default: now)')
    command("reload", "make the running proxy re-read its configuration (SIGHUP)")
    args = parser.parse_args(argv)

    try:
        config = load_config(Path(args.config))
    except ConfigError as error:
        print(f"sipfork: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"sipfork: cannot read {args.config}: {error.strerror}", file=sys.stderr)
        return 2
    handler = {"run": _run, "check": _check, "registrations": _registrations, "explain": _explain,
               "reload": _reload}[args.command]
    try:
        return handler(config, args)
    except BrokenPipeError:
        # `sipfork explain … | head` closed the pipe: nothing more to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(config: Config, args: argparse.Namespace) -> int:
    from sipfork.shell.server import run_worker
    from sipfork.shell.workers import run_workers

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    offset = 0.0
    if args.clock:
        offset = _parse_local(args.clock, config).timestamp() - time.time()
    try:
        if config.proxy.workers > 1:
            return run_workers(config, clock_offset=offset)
        run_worker(config, clock_offset=offset)
    except OSError as error:
        print(f"sipfork: cannot listen: {error}", file=sys.stderr)
        return 1
    return 0


def _target_text(target: Target | int) -> str:
    if isinstance(target, int):
        return {480: "unavailable (480)", 486: "busy (486)", 603: "decline (603)"}.get(target, str(target))
    extra = []
    if target.delay:
        extra.append(f"after {target.delay}s")
    if target.duration:
        extra.append(f"{target.duration}s")
    if target.gateway and target.kind == "external":
        extra.append(f"via {target.gateway}")
    return target.text + (f" ({', '.join(extra)})" if extra else "")


def _check(config: Config, args: argparse.Namespace) -> int:
    proxy = config.proxy
    lines = [
        f"{config.path}: OK",
        f"domain {proxy.domain}, listening on {', '.join(str(listen) for listen in proxy.listen)}",
        f"data in {proxy.data_dir}, timezone {proxy.timezone}, ring time {proxy.ring_time}s, "
        f"digest {', '.join(proxy.digest_algorithms)}, {proxy.workers} worker(s)",
        f"{len(config.users)} user(s):",
    ]
    for user in config.users:
        extension = f" (extension {user.extension})" if user.extension else ""
        lines.append(f"  {user.name}@{proxy.domain}{extension}")
    for group in config.groups:
        lines.append(f"group {group.name}: {', '.join(group.members)}")
    for gateway in config.gateways:
        inbound = f", calls in from {', '.join(gateway.inbound_from)}" if gateway.inbound_from else ""
        lines.append(f"gateway {gateway.name}: {gateway.uri}{inbound}")
    for number in config.numbers:
        aliases = f" (also {', '.join(number.aliases)})" if number.aliases else ""
        lines.append(f"number {number.number}{aliases}:")
        for rule in number.forwardings:
            duration = "unlimited" if rule.duration is None else f"{rule.duration}s"
            on = ", ".join(sorted(reason.value for reason in rule.on))
            targets = ", ".join(_target_text(target) for target in rule.targets)
            lines.append(f"  {rule.name}: {rule.ringing} {duration}, on {on}: {targets}")
        lines.append(f"  otherwise: {_target_text(number.otherwise)}")
    print("\n".join(lines))
    return 0


def _registrations(config: Config, args: argparse.Namespace) -> int:
    from sipfork.shell.server import store_path
    from sipfork.store.sqlite import SqliteStore

    path = store_path(config)
    if not path.exists():
        print("no registrations yet")
        return 0
    store = SqliteStore(path)
    try:
        bindings = store.load()
    finally:
        store.close()
    now = time.time()
    current = sorted((b for b in bindings if b.expires_at > now), key=lambda b: (b.user, -b.q, b.contact))
    if not current:
        print("no registrations")
        return 0
    rows = [("USER", "CONTACT", "SOURCE", "EXPIRES", "USER AGENT")]
    for binding in current:
        host = f"[{binding.source_host}]" if ":" in binding.source_host else binding.source_host
        rows.append((binding.user, binding.contact, f"{binding.transport}:{host}:{binding.source_port}",
                     f"{int(binding.expires_at - now)}s", binding.user_agent or "-"))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    return 0


def _parse_local(text: str, config: Config) -> datetime:
    try:
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M")
    except ValueError as error:
        raise SystemExit(f'sipfork: --at wants "YYYY-MM-DD HH:MM", not {text!r}') from error
    return moment.replace(tzinfo=ZoneInfo(config.proxy.timezone))


def _explain(config: Config, args: argparse.Namespace) -> int:
    from sipfork.routing.explain import explain
    from sipfork.shell.server import store_path
    from sipfork.store.sqlite import SqliteStore

    now = time.time()
    at = _parse_local(args.at, config) if args.at else datetime.now(ZoneInfo(config.proxy.timezone))
    registrations: dict[str, list] = {}  # type: ignore[type-arg]
    path = store_path(config)
    if path.exists():
        store = SqliteStore(path)
        try:
            for binding in store.load():
                registrations.setdefault(binding.user, []).append(binding)
        finally:
            store.close()
    caller = None if args.caller in (None, "anonymous") else args.caller
    print(explain(config, dialled=args.to, caller=caller, at=at, registrations=registrations, now=now))
    return 0


def _reload(config: Config, args: argparse.Namespace) -> int:
    from sipfork.shell.server import pid_path

    path = pid_path(config)
    try:
        pid = int(path.read_text())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        print(f"sipfork: no running proxy found ({path})", file=sys.stderr)
        return 1
    print(f"asked sipfork (pid {pid}) to reload {config.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
