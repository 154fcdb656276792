"""Where everything lives: files of the harness, loopback addresses and ports.

All traffic stays on the loopback range 127.0.0.0/8. The callers are all on
the trusted gateway address 127.0.0.1, each SIPp process on a port of its own
(5061, then 5101, 5102, ...: a proxy with several workers sharing its port
through SO_REUSEPORT picks a worker by the sender's address and port); each
contact has an address of its own (127.0.0.2-4), so a registration's source
address is also its Contact and the proxy may use either. SIPp binds an RTP
echo port and that port + 2, so the media ports of the SIPp processes are 10
apart.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
SCENARIOS = BENCH_DIR / "scenarios"
KAMAILIO_CFG = BENCH_DIR / "kamailio.cfg"
OUT_DIR = BENCH_DIR / "out"
PLOTS_DIR = BENCH_DIR / "plots"
RESULTS_MD = BENCH_DIR / "RESULTS.md"

DOMAIN = "bench.local"
USER = "bench"
PASSWORD = "bench-secret"


@dataclass(frozen=True)
class Endpoint:
    """One SIPp process's socket: address, SIP port, media port, control port."""

    host: str
    port: int
    media_port: int
    control_port: int

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


MAX_CALLERS = 16


def _callers() -> tuple[Endpoint, ...]:
    """The caller processes' sockets: the first on 5061, the others on 5101,
    5102, ... (media ports 16110, 16120, ...; control ports 18901, ...)."""
    first = Endpoint("127.0.0.1", 5061, 16000, 18880)
    return (first,) + tuple(
        Endpoint("127.0.0.1", 5100 + i, 16100 + 10 * i, 18900 + i) for i in range(1, MAX_CALLERS)
    )


@dataclass(frozen=True)
class Layout:
    """The addresses of one benchmark set-up (the smoke test uses other ports)."""

    # every SIPp caller (UAC) a run may use; a run with N callers uses the first N
    callers: tuple[Endpoint, ...] = field(default_factory=_callers)
    # the contact that answers, then the two that only ring
    answerer: Endpoint = Endpoint("127.0.0.2", 5082, 16010, 18881)
    ringers: tuple[Endpoint, ...] = (
        Endpoint("127.0.0.3", 5083, 16020, 18882),
        Endpoint("127.0.0.4", 5084, 16030, 18883),
    )
    # the SIPp process that registers many users for the memory test, and
    # the (never contacted) address their contacts name
    registrar_client: Endpoint = Endpoint("127.0.0.5", 5085, 16040, 18884)
    bulk_contact_host: str = "127.0.0.9"
    bulk_contact_port: int = 5099
    trusted_host: str = "127.0.0.1"
    ports: dict[str, int] = field(
        default_factory=lambda: {"sipfork": 5060, "kamailio": 5070}
    )

    @property
    def caller(self) -> Endpoint:
        """The first caller (the only one in a run with one caller)."""
        return self.callers[0]

    def caller_endpoints(self, n: int) -> tuple[Endpoint, ...]:
        if not 1 <= n <= len(self.callers):
            raise ValueError(f"{n} callers: this layout has 1 to {len(self.callers)}")
        return self.callers[:n]

    @property
    def contacts(self) -> tuple[Endpoint, ...]:
        return (self.answerer, *self.ringers)

    def sipp_endpoints(self, callers: int = 1) -> tuple[Endpoint, ...]:
        """The sockets of the SIPp processes of a batch of calls: callers, then contacts."""
        return (*self.caller_endpoints(callers), *self.contacts)


def venv_bin(name: str) -> Path:
    """A program of the virtualenv running this harness (or of the repo's .venv)."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return here
    return REPO_DIR / ".venv" / "bin" / name
