"""Answers kept in place of finished server transactions.

A non-INVITE server transaction over UDP that sent its final response
(Completed, RFC 3261 §17.2.2) only resends that response to retransmissions
of its request until Timer J: so only the response is kept, by the
request's transaction key, not the whole transaction. The core also keeps
REGISTER challenges this way for 8*T1, so that a UA's first retransmissions
get the very same 401.

Each kind of answer is kept equally long (Timer J is 64*T1 for all, a
challenge 8*T1): first in, first out. Keys are held in groups by the second
of the linger grid they end in (transactions/base.py), so one timer wake-up
forgets a whole group. A key is one string (branch, sent-by host and port,
method): a tuple of four objects costs twice as much, for 32 s per request.
Only the response's bytes are kept: a retransmission comes over UDP from
where the request came, so the core works out the destination again
(RFC 3261 §18.2.2) instead of keeping a Send per request.
"""

from __future__ import annotations

import collections

from sipfork.core.transactions.base import linger_until

ServerKey = tuple[str, str, int, str]  # (Via branch, sent-by host, sent-by port, method): RFC 3261 §17.2.3


def key_text(key: ServerKey) -> str:
    """A server transaction key as one string."""
    branch, host, port, method = key
    return f"{branch} {host} {port} {method}"


class KeptAnswers:
    """The answers, by key text, and when each is forgotten."""

    def __init__(self) -> None:
        self.by_key: dict[str, bytes] = {}
        self._completed: collections.deque[tuple[float, list[str]]] = collections.deque()  # Timer J
        self._challenges: collections.deque[tuple[float, list[str]]] = collections.deque()  # 8*T1

    def get(self, key: ServerKey) -> bytes | None:
        return self.by_key.get(key_text(key)) if self.by_key else None

    def keep_completed(self, key: ServerKey, response: bytes, until: float) -> None:
        """Answer the request ``key`` again with ``response`` until Timer J (``until``)."""
        self._keep(self._completed, key, response, until)

    def keep_challenge(self, key: ServerKey, response: bytes, until: float) -> None:
        self._keep(self._challenges, key, response, until)

    def replace(self, text: str, response: bytes) -> None:
        """Answer with ``response`` instead, for as long as the old one was kept."""
        if text in self.by_key:
            self.by_key[text] = response

    def _keep(self, order: collections.deque[tuple[float, list[str]]], key: ServerKey, response: bytes,
              until: float) -> None:
        text = key_text(key)
        self.by_key[text] = response
        until = linger_until(until)
        if order and order[-1][0] == until:
            order[-1][1].append(text)
        else:
            order.append((until, [text]))

    def next_deadline(self) -> float | None:
        """When the next group is forgotten (asked after every message: no loop)."""
        completed, challenges = self._completed, self._challenges
        if completed and challenges:
            return min(completed[0][0], challenges[0][0])
        if completed:
            return completed[0][0]
        if challenges:
            return challenges[0][0]
        return None

    def expire(self, now: float) -> None:
        by_key = self.by_key
        for order in (self._completed, self._challenges):
            while order and order[0][0] <= now:
                for text in order.popleft()[1]:
                    by_key.pop(text, None)  # Timer J: Terminated
