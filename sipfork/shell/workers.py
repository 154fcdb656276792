"""Several worker processes on one port (``[proxy] workers``).

Each worker is a whole proxy (shell and core) in its own process; they share
the public port through SO_REUSEPORT, which keeps a peer's datagrams on one
worker, and the registrations through the SQLite store. A worker sends its
requests from a port of its own, so the responses return to the worker that
holds the transaction. This process only starts them, passes SIGHUP on and
stops them on SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from pathlib import Path

from sipfork.config import Config, load_config
from sipfork.shell.server import pid_path, run_worker

log = logging.getLogger("sipfork")


def _worker(path: str, index: int, clock_offset: float, level: int) -> None:
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s %(name)s[{index}]: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    run_worker(load_config(Path(path)), clock_offset=clock_offset, shared=True)


def run_workers(config: Config, *, clock_offset: float = 0.0) -> int:
    if config.path is None:
        raise ValueError("workers need the configuration's path to load it")
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    processes = [
        context.Process(target=_worker, args=(str(config.path), index, clock_offset, level), name=f"sipfork-{index}")
        for index in range(config.proxy.workers)
    ]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: each worker closes cleanly

    def reload(signum: int, frame: object) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    pid = pid_path(config)
    pid.parent.mkdir(parents=True, exist_ok=True)  # a fresh data_dir: the workers make it too, later
    for process in processes:
        process.start()
    pid.write_text(f"{os.getpid()}\n")
    log.info("started %d workers", len(processes))
    status = 0
    for process in processes:
        process.join()
        if process.exitcode not in (0, -signal.SIGTERM) and not stopping:
            log.error("worker %s ended with %s; stopping the others", process.name, process.exitcode)
            status = 1
            stop(signal.SIGTERM, None)
    pid.unlink(missing_ok=True)
    return status
