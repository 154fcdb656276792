"""Where registrations live: the interface every store implements.

The core keeps the location table in memory (``sipfork.core.location``); a
store only has to persist it. The shell loads every binding at start-up and
then applies the core's ``SaveBinding`` / ``DropBinding`` effects in order,
*before* the response that acknowledges them is sent (DESIGN.md). So
``save`` and ``drop`` must not return until the change is durable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from attrs import frozen

from sipfork.bindings import Binding


@runtime_checkable
class BindingStore(Protocol):
    """A durable map ``(user, contact) -> Binding``."""

    def load(self) -> list[Binding]:
        """Every stored binding, expired ones included (the core expires them)."""
        ...

    def save(self, binding: Binding) -> None:
        """Insert or replace the binding keyed by ``(binding.user, binding.contact)``.

        Returns only once the change survives a crash of this process.
        """
        ...

    def drop(self, user: str, contact: str) -> None:
        """Remove a binding; dropping an absent one is not an error."""
        ...

    def write(self, changes: Iterable[Binding | tuple[str, str]]) -> None:
        """Several changes as one: in order, a ``Binding`` is saved and a
        ``(user, contact)`` pair dropped, all or none.

        Returns only once every change survives a crash of this process. A
        shell that answers several REGISTERs at once (group commit) writes
        their bindings with one call, then sends their 200 OKs: one sync of
        the disk for all of them instead of one each.
        """
        ...

    def close(self) -> None: ...


@frozen(kw_only=True)
class Changes:
    """What changed in a store since a version (for several workers sharing it).

    ``version`` is the version to ask from next time. ``complete`` is false when
    the store no longer remembers every change since the version asked for
    (its change log was pruned): the reader must ``load()`` everything again.
    """

    version: int
    saved: tuple[Binding, ...] = ()
    dropped: tuple[tuple[str, str], ...] = ()  # (user, contact)
    complete: bool = True


@runtime_checkable
class ChangeFeed(Protocol):
    """Optional: a store that can tell another process what changed.

    A worker remembers ``version()`` after ``load()`` and polls
    ``changes_since`` to pick up bindings other workers wrote, when
    ``may_have_changed`` says there may be some.
    """

    def version(self) -> int: ...

    def may_have_changed(self, version: int) -> bool:
        """A cheap test before ``changes_since``: False only when nothing
        was written after ``version``."""
        ...

    def changes_since(self, version: int) -> Changes: ...
