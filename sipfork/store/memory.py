"""An in-memory binding store for tests (nothing survives the process)."""

from __future__ import annotations

from collections.abc import Iterable

from sipfork.bindings import Binding
from sipfork.store.base import Changes


class MemoryStore:
    """``BindingStore`` and ``ChangeFeed`` in a dict, for tests.

    Also records every call in ``operations`` (``("save", binding)``,
    ``("drop", (user, contact))``) so a test can check what was written in
    which order.
    """

    def __init__(self, bindings: list[Binding] | tuple[Binding, ...] = ()) -> None:
        self._bindings: dict[tuple[str, str], Binding] = {}
        self._log: list[tuple[int, Binding | tuple[str, str]]] = []
        self._version = 0
        self.operations: list[tuple[str, Binding | tuple[str, str]]] = []
        self.closed = False
        for binding in bindings:
            self._bindings[(binding.user, binding.contact)] = binding

    def load(self) -> list[Binding]:
        self._check_open()
        return list(self._bindings.values())

    def save(self, binding: Binding) -> None:
        self._check_open()
        self._bindings[(binding.user, binding.contact)] = binding
        self._version += 1
        self._log.append((self._version, binding))
        self.operations.append(("save", binding))

    def drop(self, user: str, contact: str) -> None:
        self._check_open()
        self.operations.append(("drop", (user, contact)))
        if self._bindings.pop((user, contact), None) is not None:
            self._version += 1
            self._log.append((self._version, (user, contact)))

    def write(self, changes: Iterable[Binding | tuple[str, str]]) -> None:
        for change in changes:
            if isinstance(change, Binding):
                self.save(change)
            else:
                self.drop(*change)

    def close(self) -> None:
        self.closed = True

    def version(self) -> int:
        return self._version

    def may_have_changed(self, version: int) -> bool:
        self._check_open()
        return version != self._version

    def changes_since(self, version: int) -> Changes:
        latest: dict[tuple[str, str], Binding | None] = {}
        for logged_version, change in self._log:
            if logged_version <= version:
                continue
            if isinstance(change, Binding):
                latest[(change.user, change.contact)] = change
            else:
                latest[change] = None
        latest_saved = tuple(b for b in latest.values() if b is not None)
        dropped = tuple(key for key, b in latest.items() if b is None)
        return Changes(version=self._version, saved=latest_saved, dropped=dropped)

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("store is closed")
