"""Shared fixtures for the routing tests: a configuration and bindings."""

from __future__ import annotations

from sipfork.bindings import Binding

NOW = 1_000_000.0

CONFIG = """\
[proxy]
domain = "pbx.local"
timezone = "Europe/Berlin"
ring_time = 30

[[user]]
name = "alice"
password = "a"
extension = "11"

[[user]]
name = "bob"
password = "b"
extension = "12"

[[user]]
name = "carol"
password = "c"

[[group]]
name = "office"
members = ["alice", "bob"]

[[gateway]]
name = "trunk"
uri = "sip:127.0.0.1:5080"

[[gateway]]
name = "trunk2"
uri = "sip:[::1]:5082;transport=tcp"

[[number]]
number = "+4922166966966"
aliases = ["022166966966"]
otherwise = "unavailable"

[[number.forwarding]]
type = "always"
callers = ["anonymous"]
ringing = "parallel"
duration = "unlimited"
targets = ["sip:mailbox@127.0.0.1:5090"]

[[number.forwarding]]
type = "schedule"
schedule = ["mon-fri 08:00-18:00"]
ringing = "parallel"
duration = 20
targets = ["alice", "group:office", { target = "+491701234567", delay = 10 }, { target = "carol", duration = 5 }]

[[number.forwarding]]
type = "always"
on = ["busy", "no-answer"]
ringing = "sequential"
duration = 15
targets = ["carol", { target = "bob", duration = 10 }, { target = "+491709999", gateway = "trunk2" }]

[[number.forwarding]]
type = "date"
dates = ["2026-12-24..2026-12-26"]
callers = ["+49*"]
targets = ["carol"]

[[number]]
number = "+4930100"
otherwise = "busy"

[[number]]
number = "+4930200"
otherwise = "decline"

[[number]]
number = "+4930300"
otherwise = "+491701234567"

[[number]]
number = "+4930400"
otherwise = "group:office"
"""


def binding(user: str, port: int, *, expires_at: float = NOW + 600, q: float = 1.0,
            transport: str = "udp", contact: str | None = None) -> Binding:
    return Binding(
        user=user,
        contact=contact or f"sip:{user}@127.0.0.1:{port}",
        source_host="127.0.0.1",
        source_port=port,
        transport=transport,
        expires_at=expires_at,
        q=q,
    )
