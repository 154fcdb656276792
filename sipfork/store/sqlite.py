"""The default binding store: one SQLite file under ``data_dir``.

Durability: WAL journal with ``synchronous=FULL``, and every ``save`` /
``drop`` is its own committed transaction before it returns, so a binding
the registrar acknowledged survives ``kill -9`` of the proxy (and, with FULL,
a power cut). Several processes may share the file (workers): WAL lets
readers run beside the one writer, ``busy_timeout`` makes a writer wait for
another instead of failing, and writes take the lock up front (``BEGIN
IMMEDIATE``) so two writers never deadlock upgrading a read lock.

Change feed (``ChangeFeed``): every row carries the store-wide ``version`` of
the write that last touched it; a drop leaves a tombstone row with its
version, so another process can ask ``changes_since(v)`` instead of reloading
everything. Tombstones beyond the newest ``tombstone_limit`` are pruned; a
reader that fell further behind gets ``complete=False`` and reloads.

Whether to ask at all: a worker asks before every request it routes, and a
read transaction costs ~4 µs when SQLite is in the CPU's caches and ~90 µs
when it is not, as it rarely is between a call's requests. So every write
also puts the version it took into ``<file>-version``, an 8-byte word all
processes map (``may_have_changed`` reads it: no system call). The word is
written inside the write transaction, whose lock orders the writers, so it
never goes down and is never below the committed version; a reader at a
committed version equal to the word has missed nothing. A write rolled back
leaves the word ahead of the file until the next write: readers ask in vain
meanwhile, which costs time, not correctness.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from sipfork.bindings import Binding
from sipfork.store.base import Changes

FILENAME = "registrations.sqlite3"
"""The file's name inside ``[proxy] data_dir`` (a suggestion for the shell)."""

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bindings (
    user          TEXT    NOT NULL,
    contact       TEXT    NOT NULL,
    source_host   TEXT    NOT NULL,
    source_port   INTEGER NOT NULL,
    transport     TEXT    NOT NULL,
    expires_at    REAL    NOT NULL,
    q             REAL    NOT NULL,
    call_id       TEXT    NOT NULL,
    cseq          INTEGER NOT NULL,
    user_agent    TEXT    NOT NULL,
    registered_at REAL    NOT NULL,
    version       INTEGER NOT NULL,
    dropped       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user, contact)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bindings_version ON bindings (version);
CREATE INDEX IF NOT EXISTS bindings_tombstones ON bindings (dropped, version);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('version', 0), ('pruned', 0);
"""

_COLUMNS = (
    "user, contact, source_host, source_port, transport, expires_at, q,"
    " call_id, cseq, user_agent, registered_at"
)


_SAVE = (
    f"INSERT OR REPLACE INTO bindings ({_COLUMNS}, version, dropped)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)"
)
_DROP = "UPDATE bindings SET dropped = 1, version = ? WHERE user = ? AND contact = ? AND dropped = 0"


def _row(binding: Binding, version: int) -> tuple:
    return (
        binding.user,
        binding.contact,
        binding.source_host,
        binding.source_port,
        binding.transport,
        binding.expires_at,
        binding.q,
        binding.call_id,
        binding.cseq,
        binding.user_agent,
        binding.registered_at,
        version,
    )


def _binding(row: tuple) -> Binding:
    (user, contact, source_host, source_port, transport, expires_at, q,
     call_id, cseq, user_agent, registered_at) = row
    return Binding(
        user=sys.intern(user),  # one string per user, however many contacts it has
        contact=contact,
        source_host=source_host,
        source_port=source_port,
        transport=transport,
        expires_at=expires_at,
        q=q,
        call_id=call_id,
        cseq=cseq,
        user_agent=user_agent,
        registered_at=registered_at,
    )


def _switch_to_wal(connection: sqlite3.Connection, timeout: float) -> str:
    """``PRAGMA journal_mode = WAL``, waiting up to ``timeout`` seconds for
    other processes doing the same: on a fresh file, two connections
    switching at once deadlock, and SQLite fails one of them at once
    ("database is locked") instead of calling the busy handler (workers
    starting together on a fresh data_dir did, about one start in thirty)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return str(connection.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


class SqliteStore:
    """``BindingStore`` and ``ChangeFeed`` on a SQLite file.

    The parent directory is created if missing. One connection per instance;
    calls from several threads are serialised by a lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        tombstone_limit: int = 1000,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tombstone_limit = tombstone_limit
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = sqlite3.connect(
            self.path,
            timeout=busy_timeout,
            isolation_level=None,  # we issue BEGIN / COMMIT ourselves
            check_same_thread=False,
        )
        connection = self._connection
        connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = _switch_to_wal(connection, busy_timeout)
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"{self.path}: cannot use WAL journal (got {mode})")
        connection.execute("PRAGMA synchronous = FULL")
        with self._write() as cursor:
            found = cursor.execute("PRAGMA user_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"{self.path}: schema version {found} is newer than this sipfork ({SCHEMA_VERSION})"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    cursor.execute(statement)
            cursor.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            # A word behind the file (a data_dir from before the word, or the
            # word's file removed) is brought up to it, under the write lock.
            self._word = _map_word(self.path.with_name(self.path.name + "-version"))
            current = self._meta(cursor, "version")
            if _WORD.unpack_from(self._word)[0] < current:
                _WORD.pack_into(self._word, 0, current)

    # -- BindingStore ---------------------------------------------------

    def load(self) -> list[Binding]:
        with self._lock:
            rows = self._db().execute(
                f"SELECT {_COLUMNS} FROM bindings WHERE dropped = 0 ORDER BY user, version"
            ).fetchall()
        return [_binding(row) for row in rows]

    def save(self, binding: Binding) -> None:
        self.write((binding,))

    def drop(self, user: str, contact: str) -> None:
        self.write(((user, contact),))

    def write(self, changes: Iterable[Binding | tuple[str, str]]) -> None:
        """One transaction, so one sync of the disk, for every change (in
        order); each change still gets a version of its own (in order)."""
        changes = list(changes)
        if not changes:
            return
        with self._write() as cursor:
            version: int | None = None  # the next free one, once taken
            dropped = False
            for change in changes:
                if isinstance(change, Binding):
                    if version is None:
                        version = self._take_versions(cursor, len(changes))
                    cursor.execute(_SAVE, _row(change, version))
                    version += 1
                    continue
                user, contact = change
                if version is None:
                    exists = cursor.execute(
                        "SELECT 1 FROM bindings WHERE user = ? AND contact = ? AND dropped = 0",
                        (user, contact),
                    ).fetchone()
                    if exists is None:
                        continue  # absent: no new version for nothing
                    version = self._take_versions(cursor, len(changes))
                cursor.execute(_DROP, (version, user, contact))
                version += 1
                dropped = dropped or cursor.rowcount > 0
            if dropped:
                self._prune_tombstones(cursor)

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
                self._word.close()

    # -- ChangeFeed -----------------------------------------------------

    def version(self) -> int:
        """The version of the latest write. Read it *before* ``load()``:
        ``changes_since`` then replays anything ``load`` may already hold,
        which is harmless (saves replace, drops remove)."""
        with self._lock:
            return self._meta(self._db().cursor(), "version")

    def may_have_changed(self, version: int) -> bool:
        """False when no write took a version after ``version`` (one this
        store's ``changes_since`` returned): then there is nothing to ask."""
        self._db()  # refuses when closed
        return _WORD.unpack_from(self._word)[0] != version

    def changes_since(self, version: int) -> Changes:
        with self._lock:
            cursor = self._db().cursor()
            cursor.execute("BEGIN")  # one snapshot for all three reads
            try:
                current = self._meta(cursor, "version")
                pruned = self._meta(cursor, "pruned")
                rows = cursor.execute(
                    f"SELECT {_COLUMNS}, dropped FROM bindings WHERE version > ? ORDER BY version",
                    (version,),
                ).fetchall()
            finally:
                cursor.execute("COMMIT")
        saved = tuple(_binding(row[:-1]) for row in rows if not row[-1])
        dropped = tuple((row[0], row[1]) for row in rows if row[-1])
        return Changes(version=current, saved=saved, dropped=dropped, complete=version >= pruned)

    # -- helpers --------------------------------------------------------

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise sqlite3.ProgrammingError(f"{self.path}: store is closed")
        return self._connection

    def _write(self) -> _WriteTransaction:
        return _WriteTransaction(self)

    @staticmethod
    def _meta(cursor: sqlite3.Cursor, key: str) -> int:
        return int(cursor.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def _take_versions(self, cursor: sqlite3.Cursor, count: int) -> int:
        """Reserve ``count`` versions (unused ones are gaps, which readers
        do not mind); the first of them."""
        last = int(
            cursor.execute(
                "UPDATE meta SET value = value + ? WHERE key = 'version' RETURNING value", (count,)
            ).fetchone()[0]
        )
        _WORD.pack_into(self._word, 0, last)  # under the write lock: see the module's doc
        return last - count + 1

    def _prune_tombstones(self, cursor: sqlite3.Cursor) -> None:
        """Keep only the newest ``tombstone_limit`` tombstones; remember the
        highest pruned version so a reader behind it knows to reload."""
        row = cursor.execute(
            "SELECT version FROM bindings WHERE dropped = 1 ORDER BY version DESC LIMIT 1 OFFSET ?",
            (self._tombstone_limit,),
        ).fetchone()
        if row is None:
            return
        horizon = int(row[0])
        cursor.execute("DELETE FROM bindings WHERE dropped = 1 AND version <= ?", (horizon,))
        cursor.execute(
            "UPDATE meta SET value = max(value, ?) WHERE key = 'pruned'", (horizon,)
        )


_WORD = struct.Struct("=q")


def _map_word(path: Path) -> mmap.mmap:
    """The shared word of the latest version taken, created as 0 if missing."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size < _WORD.size:
            os.ftruncate(fd, _WORD.size)
        return mmap.mmap(fd, _WORD.size)
    finally:
        os.close(fd)


class _WriteTransaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` under the lock.

    When a statement or the COMMIT itself fails (disk full, I/O error, busy),
    the transaction is rolled back before the error goes on: SQLite may
    otherwise leave the connection inside it, and every later ``BEGIN``
    would fail ("cannot start a transaction within a transaction") until a
    restart. An error of the ROLLBACK (SQLite may have rolled back already)
    is ignored; the original error is the one raised.
    """

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._cursor: sqlite3.Cursor | None = None

    def __enter__(self) -> sqlite3.Cursor:
        self._store._lock.acquire()
        try:
            cursor = self._store._db().cursor()
            cursor.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._store._lock.release()
            raise
        self._cursor = cursor
        return cursor

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        cursor = self._cursor
        try:
            if cursor is None:
                return
            if exc_type is None:
                try:
                    cursor.execute("COMMIT")
                except BaseException:
                    self._roll_back(cursor)
                    raise
            else:
                self._roll_back(cursor)  # then the statement's error goes on
        finally:
            self._store._lock.release()

    def _roll_back(self, cursor: sqlite3.Cursor) -> None:
        try:
            if cursor.connection.in_transaction:
                cursor.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the original error matters; the next BEGIN will say if this did
