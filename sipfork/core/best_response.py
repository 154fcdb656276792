"""Choosing the response a forking proxy sends upstream (RFC 3261 §16.7 step 6)."""

from __future__ import annotations

from collections.abc import Iterable

# Within 4xx, RFC 3261 §16.7 asks to prefer the codes the caller can act on
# (a challenge it can answer, an extension or an address it can fix). Then
# busy before "unavailable" before a timeout: "486 when all were busy, 480
# when none answered" (CONFIG.md, Semantics 5) — a device that said busy is
# more telling than one that did not answer.
_PREFERRED_4XX = {401: 0, 407: 0, 415: 1, 420: 1, 484: 1, 486: 2, 480: 4, 408: 5}
_OTHER_4XX = 3


def rank(status: int) -> tuple[int, int, int]:
    """Lower is better: 2xx, then 6xx, then 3xx, 4xx (preferred codes first), 5xx."""
    klass = status // 100
    if klass == 2:
        return (0, 0, status)
    if klass == 6:
        return (1, 0, status)
    if klass == 3:
        return (2, 0, status)
    if klass == 4:
        return (3, _PREFERRED_4XX.get(status, _OTHER_4XX), status)
    return (4, 0, status)


def best_status(statuses: Iterable[int]) -> int | None:
    """The best of the final statuses, or None when there is none."""
    best: int | None = None
    for status in statuses:
        if best is None or rank(status) < rank(best):
            best = status
    return best


def upstream_status(status: int) -> int:
    """A 503 from a branch becomes 500 upstream (RFC 3261 §16.7 step 6):
    the caller must not take our downstream's overload as ours."""
    return 500 if status == 503 else status
