"""The core's one timer queue: every object with a ``deadline()`` (server and
client transactions, call contexts), handed out when its deadline comes.

An object is armed lazily: :meth:`Deadlines.touch` only marks it, and its
deadline goes into the queue when the shell next asks :meth:`Deadlines.earliest`,
which it does after sending what a message produced. So the queue work stays
off the path from a request in to its branches out, and an object touched
several times while handling one message is armed once.

Objects are kept in buckets by deadline, with a heap of the distinct
deadlines: most deadlines are a finished transaction's or call's lingering
time on the 1 s grid, so a second's worth of them (hundreds under load)
share one bucket, and arming one is an append, not a push onto a heap of
tens of thousands. A bucket entry whose deadline is no longer the object's
armed one is stale and skipped; a count of the armed objects per deadline
tells a bucket holding only stale entries without looking into it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Protocol


class HasDeadline(Protocol):
    def deadline(self) -> float | None: ...


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[float] = []  # the deadlines that have a bucket
        self._buckets: dict[float, list[HasDeadline]] = {}  # in the order armed: ties go first armed, first due
        self._armed: dict[HasDeadline, float] = {}
        self._count: dict[float, int] = {}  # armed objects per deadline (absent: none)
        self._touched: dict[HasDeadline, None] = {}

    def touch(self, obj: HasDeadline) -> None:
        """``obj``'s deadline may have changed."""
        self._touched[obj] = None

    def forget(self, obj: HasDeadline) -> None:
        self._touched.pop(obj, None)
        old = self._armed.pop(obj, None)
        if old is not None:
            self._uncount(old)

    def _uncount(self, deadline: float) -> None:
        left = self._count[deadline] - 1
        if left:
            self._count[deadline] = left
        else:
            del self._count[deadline]

    def _arm_touched(self) -> None:
        armed = self._armed
        count = self._count
        buckets = self._buckets
        for obj in self._touched:
            deadline = obj.deadline()
            old = armed.get(obj)
            if deadline == old:
                continue
            if old is not None:
                self._uncount(old)
            if deadline is None:
                del armed[obj]
                continue
            armed[obj] = deadline
            count[deadline] = count.get(deadline, 0) + 1
            bucket = buckets.get(deadline)
            if bucket is None:
                buckets[deadline] = [obj]
                heapq.heappush(self._heap, deadline)
            else:
                bucket.append(obj)
        self._touched.clear()

    def earliest(self) -> float | None:
        if self._touched:
            self._arm_touched()
        heap = self._heap
        while heap:
            deadline = heap[0]
            if deadline in self._count:
                return deadline
            heapq.heappop(heap)
            del self._buckets[deadline]
        return None

    def due(self, now: float) -> Iterator[HasDeadline]:
        """The objects whose deadline has come, earliest first, each disarmed
        as it is handed out. The caller touches it again after handling it;
        one whose new deadline has come too is handed out again in this pass.
        A bucket leaves the queue only once it has been walked to its end: if
        the caller stops early (an error in handling one), the rest wait for
        the next pass."""
        heap = self._heap
        armed = self._armed
        if self._touched:
            self._arm_touched()
        while heap and heap[0] <= now:
            deadline = heap[0]
            bucket = self._buckets[deadline]
            # An object armed again for this same deadline while the bucket
            # is handed out is appended to it, and met again in this walk.
            index = 0
            while index < len(bucket):
                obj = bucket[index]
                index += 1
                if armed.get(obj) != deadline:
                    continue
                del armed[obj]
                self._uncount(deadline)
                yield obj
                if self._touched:
                    self._arm_touched()
            if self._buckets.pop(deadline, None) is None:
                continue  # earliest() dropped it meanwhile (it had no armed object left)
            if heap[0] == deadline:
                heapq.heappop(heap)
            else:  # one was armed for a time already past: it went on top
                heap.remove(deadline)
                heapq.heapify(heap)
