"""The running proxy: sockets, the clock, one timer, signals, reload.

The only asyncio code (DESIGN.md). It hands every message to the core,
applies the core's effects in order — a binding reaches SQLite before the
200 OK to its REGISTER is sent, and when it cannot, the core answers that
REGISTER 500 instead — and re-arms one timer at the earliest deadline.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sqlite3
import time
from pathlib import Path

from sipfork.bindings import Binding
from sipfork.config import Config, ConfigError, load_config
from sipfork.core.effects import DropBinding, Effect, Log, SaveBinding, Send
from sipfork.core.ids import Ids
from sipfork.core.proxy import Core
from sipfork.shell.transports import TcpConnections, UdpProtocol
from sipfork.store.sqlite import FILENAME, SqliteStore

log = logging.getLogger("sipfork")
TIMER_TICK = 0.01  # seconds: timers are handled on these ticks (see Server.arm)
GC_THRESHOLD = 50_000  # allocations before a young collection (CPython's default: 700)
# How long the core's informational lines (a line per call, per
# registration) may wait to be written together (see Server.log_later).
LOG_DELAY = 0.25


def settle_memory() -> None:
    """Move what start-up (or a reload) built — the configuration, the
    loaded bindings — out of the collector's sight, and collect the young
    generations less often: a full collection over hundreds of thousands of
    live objects paused the loop for hundreds of milliseconds under load and
    the socket queue overflowed meanwhile (benchmarks/README.md). Most of
    what a call allocates is freed by reference counting anyway."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 100)


# What the benchmark showed at 800 calls/s with 20 s steps: every young
# collection (50k objects) paused the loop ~25 ms, a middle one 440 ms and a
# full one a second, enough for the callers to retransmit; and none of them
# ever found garbage (the message paths make no reference cycles: reference
# counting frees everything). So what survives a few thousand allocations is
# frozen out of the collector's sight as well (gc.freeze is O(1)); frozen
# objects are still freed by reference counting. A full collection of
# everything (a reference cycle somewhere would otherwise stay) runs every
# SWEEP_EVERY seconds, when the proxy has been idle for SWEEP_IDLE seconds.
FREEZE_EVERY = 10_000  # young objects (net allocations) before they are frozen
SWEEP_EVERY = 600.0
SWEEP_IDLE = 1.0


def keep_collections_small() -> None:
    if gc.get_count()[0] >= FREEZE_EVERY:
        gc.freeze()


class RandomBytes:
    """``os.urandom`` drawn 4 KB at a time: a call forks to several branches,
    each with a fresh branch id and tag, and one system call per id showed in
    the profile. The bytes are handed out once each."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.buffer = b""
        self.position = 0

    def __call__(self, count: int) -> bytes:
        start = self.position
        end = start + count
        if end > len(self.buffer):
            self.buffer = os.urandom(max(self.size, count))
            start, end = 0, count
        self.position = end
        return self.buffer[start:end]


def store_path(config: Config) -> Path:
    return config.proxy.data_dir / FILENAME


def load_secret(data_dir: Path) -> bytes:
    """The key that signs digest nonces, shared by every worker and kept
    across restarts, so a nonce is good wherever the phone's next request
    lands."""
    path = data_dir / "nonce.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    temporary = path.with_suffix(f".{os.getpid()}")
    temporary.write_bytes(os.urandom(32))
    temporary.chmod(0o600)
    try:
        os.link(temporary, path)  # atomic: the first worker's key wins
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_bytes()


def pid_path(config: Config) -> Path:
    return config.proxy.data_dir / "sipfork.pid"


class Server:
    """One worker. With ``shared`` (workers > 1) it binds the public ports
    with SO_REUSEPORT beside the other workers, sends its requests from a
    port of its own (written in their Via, so responses come back here) and
    picks up the bindings other workers stored before routing a request."""

    def __init__(self, config: Config, *, clock_offset: float = 0.0, shared: bool = False) -> None:
        self.config = config
        # A test can run the proxy at another time of day (schedule rules)
        # without waiting for it: every `now` the core sees is shifted.
        self.clock_offset = clock_offset
        self.shared = shared
        config.proxy.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = SqliteStore(store_path(config))
        self.version = self.store.version()
        self.bindings = self.store.load()
        self.secret = load_secret(config.proxy.data_dir)
        self.core: Core  # made in start(), once this worker's own ports are known
        # Kept: asyncio.get_running_loop() makes a getpid system call each
        # time (its fork check), and arm_after_turn asked for it per message.
        self.loop: asyncio.AbstractEventLoop  # set in start()
        self.udp: dict[tuple[str, bool], UdpProtocol] = {}  # (host, ipv6) -> socket
        self.udp_own: dict[bool, UdpProtocol] = {}  # ipv6 -> this worker's own socket
        self.senders: dict[tuple[bool, bool], UdpProtocol] = {}  # (ipv6, own) -> udp_for's answer
        self.tcp = TcpConnections(self.deliver)
        self.servers: list[asyncio.base_events.Server] = []
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at: float | None = None
        self.arming = False  # an arm() is due at the end of this loop turn
        self.stopped = asyncio.Event()
        self.last_message = 0.0  # when the last message came (see sweep)
        self.sweeper: asyncio.TimerHandle | None = None
        self.pending: list[Effect] = []  # effects waiting for the group commit at the end of this loop turn
        self.logs: list[Log] = []  # informational lines waiting for write_logs
        self.log_writer: asyncio.TimerHandle | None = None

    def now(self) -> float:
        return time.time() + self.clock_offset

    async def start(self) -> None:
        self.loop = loop = asyncio.get_running_loop()
        via_ports: list[tuple[tuple[str, str], int]] = []
        for listen in self.config.proxy.listen:
            family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
            if listen.transport == "udp":
                _, protocol = await loop.create_datagram_endpoint(
                    lambda: UdpProtocol(self.deliver), local_addr=(listen.host, listen.port), family=family,
                    reuse_port=self.shared or None,
                )
                self.udp.setdefault((listen.host, family == socket.AF_INET6), protocol)
                if self.shared:
                    transport, own = await loop.create_datagram_endpoint(
                        lambda: UdpProtocol(self.deliver), local_addr=(listen.host, 0), family=family
                    )
                    self.udp_own.setdefault(family == socket.AF_INET6, own)
                    via_ports.append((("udp", listen.host), transport.get_extra_info("sockname")[1]))
            else:
                server = await loop.create_server(self.tcp.protocol, listen.host, listen.port, family=family,
                                                  reuse_address=True, reuse_port=self.shared or None)
                self.servers.append(server)
            log.info("listening on %s:%s:%d", listen.transport, listen.host, listen.port)
        self.core = Core(self.config, ids=Ids(RandomBytes()), bindings=self.bindings, secret=self.secret,
                         via_ports=tuple(via_ports))
        self.bindings = []
        settle_memory()
        self.sweeper = loop.call_later(SWEEP_EVERY, self.sweep)
        for signum, handler in ((signal.SIGTERM, self.stop), (signal.SIGINT, self.stop), (signal.SIGHUP, self.reload)):
            loop.add_signal_handler(signum, handler)
        if not self.shared:  # with workers, the supervisor owns the pid file
            pid_path(self.config).write_text(f"{os.getpid()}\n")
        self.arm()

    def stop(self) -> None:
        self.write_logs()
        log.info("stopping")
        self.stopped.set()

    async def close(self) -> None:
        if self.pending:
            self.commit()
        self.write_logs()
        if self.timer is not None:
            self.timer.cancel()
        if self.sweeper is not None:
            self.sweeper.cancel()
        for protocol in (*self.udp.values(), *self.udp_own.values()):
            if protocol.transport is not None:
                protocol.transport.close()
        for server in self.servers:
            server.close()
        self.tcp.close()
        self.store.close()
        pid = pid_path(self.config)
        if not self.shared and pid.exists() and pid.read_text().strip() == str(os.getpid()):
            pid.unlink()

    def reload(self) -> None:
        path = self.config.path
        if path is None:
            return
        try:
            config = load_config(path)
        except ConfigError as error:
            log.error("reload refused, keeping the running configuration: %s", error)
            return
        except OSError as error:
            log.error("reload refused, keeping the running configuration: %s", error)
            return
        if config.proxy.listen != self.config.proxy.listen or config.proxy.data_dir != self.config.proxy.data_dir:
            log.warning("reload: listen and data_dir changes take effect after a restart")
        self.config = config
        self.core.reload(config, self.now())
        settle_memory()
        self.flush()
        self.arm()

    def sync(self) -> None:
        """Take in the bindings other workers stored since we last looked."""
        if not self.store.may_have_changed(self.version):
            return
        changes = self.store.changes_since(self.version)
        if not changes.complete:
            self.core.replace_bindings(self.store.load())
        else:
            for user, contact in changes.dropped:
                self.core.binding_dropped(user, contact)
            for binding in changes.saved:
                self.core.binding_saved(binding)
        self.version = changes.version

    def deliver(self, data: bytes, source: tuple[str, int], transport: str) -> None:
        self.last_message = now = self.now()
        try:
            if self.shared and not data.startswith(b"SIP/"):
                self.sync()  # a REGISTER at another worker counts at once
            self.core.receive(data, source, transport, now)
            # A new call's branches, or an answer for the caller, leave
            # before the core makes the rest (transactions, the 100 Trying,
            # the CANCELs of the other branches).
            self.flush(settle=False)
            self.core.settle()
        except Exception:  # noqa: BLE001 — nothing may end the receive loop
            self.write_logs()
            log.exception("internal error handling a message from %s:%d; message dropped", *source)
        self.flush()
        self.arm_after_turn()
        keep_collections_small()

    def sweep(self) -> None:
        """A full collection, frozen objects included, once the proxy is idle."""
        if self.now() - self.last_message < SWEEP_IDLE:
            self.sweeper = self.loop.call_later(SWEEP_IDLE, self.sweep)
            return
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.sweeper = self.loop.call_later(SWEEP_EVERY, self.sweep)

    def on_timer(self) -> None:
        self.timer = None
        self.timer_at = None
        try:
            self.core.handle_timer(self.now())
        except Exception:  # noqa: BLE001 — a bug in one transaction must not stop the others
            self.write_logs()
            log.exception("internal error in a timer")
        self.flush()
        self.arm()

    def flush(self, *, settle: bool = True) -> None:
        """Carry out the core's effects in order (the caller arms the timer
        afterwards). Effects that write to the store wait, with everything
        after them, for the end of this turn of the event loop, so that the
        bindings of every REGISTER read in this turn are committed together
        (group commit: one sync of the disk) before any of their 200 OKs
        leaves."""
        effects = self.core.effects(settle=settle)
        if not self.pending:
            for effect in effects:
                if isinstance(effect, (SaveBinding, DropBinding)):
                    self.loop.call_soon(self.commit)
                    break
            else:
                self.carry_out(effects)
                return
        self.pending.extend(effects)

    def commit(self) -> None:
        effects, self.pending = self.pending, []
        changes = [effect.binding if isinstance(effect, SaveBinding) else (effect.user, effect.contact)
                   for effect in effects if isinstance(effect, (SaveBinding, DropBinding))]
        try:
            self.store.write(changes)  # durable before any response below is sent
        except (sqlite3.Error, OSError) as error:
            # The write is all or none, so none of it is on disk: the core
            # answers the REGISTERs that made these changes 500 instead of
            # 200 and takes its location table back to what the store has.
            # The loop goes on; the next REGISTER tries the store again.
            self.carry_out(self.core.store_failed(effects))
            self.write_logs()
            users = sorted({change.user if isinstance(change, Binding) else change[0] for change in changes})
            # After the REGISTERs' own lines, which say what they asked for.
            log.error("could not store the bindings of %s (%s): their REGISTERs are answered 500",
                      ", ".join(users), error)
            self.arm()  # a binding taken back may expire before the armed timer
            return
        self.carry_out(effects)

    def carry_out(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self.send(effect)
            elif isinstance(effect, Log):
                self.log_later(effect)

    def log_later(self, effect: Log) -> None:
        """Write an informational line within LOG_DELAY, together with the
        others that came meanwhile; a warning or error at once, after them.
        Writing a record costs ~8 µs when the logging code is in the CPU's
        caches and ~160 µs when it is not, as it never is for a call's one
        line at a few calls a second: written in batches, the call lines
        cost 3-8% less CPU per call at 100-200 calls/s (benchmarks/README.md).
        A line's timestamp is when it is written, up to LOG_DELAY late."""
        if effect.level >= logging.WARNING:
            self.write_logs()
            log.log(effect.level, "%s", effect.message)
        elif log.isEnabledFor(effect.level):
            self.logs.append(effect)
            if self.log_writer is None:
                self.log_writer = self.loop.call_later(LOG_DELAY, self.write_logs)

    def write_logs(self) -> None:
        if self.log_writer is not None:
            self.log_writer.cancel()
            self.log_writer = None
        logs, self.logs = self.logs, []
        for effect in logs:
            log.log(effect.level, "%s", effect.message)

    def send(self, effect: Send) -> None:
        if self.core.interfaces.is_own_address(effect.host, effect.port):
            # To one of our own addresses: a request whose target names this
            # proxy (a spiral, RFC 3261 §16.3 step 4), or a response to one.
            # Taken in here, on the next turn of the loop, as if it came from
            # that address: through the public port, which the workers share
            # for UDP and TCP alike, the kernel could hand it to another
            # worker, which holds none of its transactions and would take
            # the spiral for a stranger's call (407).
            self.loop.call_soon(self.deliver, effect.data, (effect.host, effect.port), effect.transport)
            return
        try:
            if effect.transport == "tcp":
                self.tcp.send(effect.data, effect.host, effect.port, effect.alternate)
                return
            own = not effect.data.startswith(b"SIP/")
            key = (":" in effect.host, own)
            protocol = self.senders.get(key)
            if protocol is None:
                # The sockets are fixed once started: look each choice up once.
                protocol = self.udp_for(effect.host, own=own)
                if protocol is not None:
                    self.senders[key] = protocol
            if protocol is None:
                log.warning("no udp listener to reach %s:%d", effect.host, effect.port)
                return
            protocol.send(effect.data, effect.host, effect.port)
        except OSError as error:
            log.info("send to %s:%d failed: %s", effect.host, effect.port, error)

    def udp_for(self, host: str, *, own: bool = False) -> UdpProtocol | None:
        """The socket to send from: responses leave from the public port the
        request came to, requests from this worker's own port."""
        ipv6 = ":" in host
        if own and ipv6 in self.udp_own:
            return self.udp_own[ipv6]
        for (_, family_v6), protocol in self.udp.items():
            if family_v6 == ipv6:
                return protocol
        return None

    def arm_after_turn(self) -> None:
        """Arm the timer once the loop has handed us every datagram that was
        waiting: a wake-up usually brings several (a call's three 180s, or
        the 200 with the CANCELs' answers), and each arm() asks the core for
        its earliest deadline, which arms what the message touched — done
        once per turn, an object touched by several of them is armed once."""
        if not self.arming:
            self.arming = True
            self.loop.call_soon(self._arm_now)

    def _arm_now(self) -> None:
        self.arming = False
        self.arm()

    def arm(self) -> None:
        """Arm the timer for the core's earliest deadline, unless the armed
        one fires no later: then it fires, finds nothing due and arms the next
        (cheaper than cancelling and re-arming for every message).

        The loop wakes on ticks of TIMER_TICK, just after the deadline's
        tick: the timers of many transactions end close together (Timers K,
        D, L, M, J of every call), and each wake-up of an idle process costs
        more than handling several timers at once. A timer fires up to one
        tick late, never early (libuv rounds delays to the millisecond, so a
        timer armed for the deadline itself could fire before it and wake the
        loop twice)."""
        deadline = self.core.next_deadline()
        if deadline is None:
            return
        wake = (deadline // TIMER_TICK + 1) * TIMER_TICK + 0.001
        if self.timer_at is not None and self.timer_at <= wake:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = wake
        self.timer = self.loop.call_later(max(0.0, wake - self.now()), self.on_timer)


async def serve(config: Config, *, clock_offset: float = 0.0, shared: bool = False) -> None:
    server = Server(config, clock_offset=clock_offset, shared=shared)
    await server.start()
    try:
        await server.stopped.wait()
    finally:
        await server.close()


def run_worker(config: Config, *, clock_offset: float = 0.0, shared: bool = False) -> None:
    import uvloop

    cheap_log_records()
    uvloop.run(serve(config, clock_offset=clock_offset, shared=shared))


def cheap_log_records() -> None:
    """Log records without what the proxy's log format never shows: the
    calling function's file and line (a walk up the stack per record), the
    thread and process names (logging HOWTO, "Optimization"). The proxy logs
    a line per call."""
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
