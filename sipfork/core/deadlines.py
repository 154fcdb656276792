"""The core's one timer queue: every object with a ``deadline()`` (server and
client transactions, call contexts) in a heap by its earliest deadline.

An object is armed lazily: :meth:`Deadlines.touch` only marks it, and its
deadline goes on the heap when the shell next asks :meth:`Deadlines.earliest`,
which it does after sending what a message produced. So the heap work stays
off the path from a request in to its branches out, and an object touched
several times while handling one message is armed once.

A heap entry whose deadline is no longer the object's armed one is stale and
skipped (cheaper than removing it from the middle of the heap).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from typing import Protocol


class HasDeadline(Protocol):
    def deadline(self) -> float | None: ...


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, HasDeadline]] = []
        self._armed: dict[HasDeadline, float] = {}
        self._touched: dict[HasDeadline, None] = {}
        self._sequence = itertools.count()  # ties: first armed, first due

    def touch(self, obj: HasDeadline) -> None:
        """``obj``'s deadline may have changed."""
        self._touched[obj] = None

    def forget(self, obj: HasDeadline) -> None:
        self._touched.pop(obj, None)
        self._armed.pop(obj, None)

    def _arm_touched(self) -> None:
        armed = self._armed
        heap = self._heap
        sequence = self._sequence
        for obj in self._touched:
            deadline = obj.deadline()
            if deadline is None:
                armed.pop(obj, None)
            elif armed.get(obj) != deadline:
                armed[obj] = deadline
                heapq.heappush(heap, (deadline, next(sequence), obj))
        self._touched.clear()

    def earliest(self) -> float | None:
        if self._touched:
            self._arm_touched()
        heap = self._heap
        armed = self._armed
        while heap:
            deadline, _, obj = heap[0]
            if armed.get(obj) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def due(self, now: float) -> Iterator[HasDeadline]:
        """The objects whose deadline has come, earliest first, each disarmed
        as it is handed out. The caller touches it again after handling it;
        one whose new deadline has come too is handed out again in this pass."""
        heap = self._heap
        armed = self._armed
        if self._touched:
            self._arm_touched()
        while heap and heap[0][0] <= now:
            deadline, _, obj = heapq.heappop(heap)
            if armed.get(obj) != deadline:
                continue
            del armed[obj]
            yield obj
            if self._touched:
                self._arm_touched()
