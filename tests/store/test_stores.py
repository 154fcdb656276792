"""The binding stores: save / drop / load, reopen, kill -9, change feed."""

from __future__ import annotations

import os
import sqlite3
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipfork.bindings import Binding
from sipfork.store.base import BindingStore, ChangeFeed
from sipfork.store.memory import MemoryStore
from sipfork.store.sqlite import FILENAME, SqliteStore


def binding(user: str = "alice", contact: str = "sip:alice@192.0.2.1:5062", **changes) -> Binding:
    values = dict(
        user=user,
        contact=contact,
        source_host="192.0.2.1",
        source_port=5062,
        transport="udp",
        expires_at=1_700_003_600.25,
        q=0.5,
        call_id="call-1@192.0.2.1",
        cseq=7,
        user_agent="Phone/1.0",
        registered_at=1_700_000_000.5,
    )
    values.update(changes)
    return Binding(**values)


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        made = MemoryStore()
    else:
        made = SqliteStore(tmp_path / FILENAME)
    yield made
    made.close()


def test_implements_the_protocols(store):
    assert isinstance(store, BindingStore)
    assert isinstance(store, ChangeFeed)


def test_save_load_drop(store):
    first = binding()
    second = binding(contact="sip:alice@192.0.2.2:5060", source_host="192.0.2.2", q=1.0)
    other = binding(user="bob", contact="sip:bob@192.0.2.3")
    for item in (first, second, other):
        store.save(item)
    assert sorted(store.load(), key=lambda b: (b.user, b.contact)) == sorted(
        [first, second, other], key=lambda b: (b.user, b.contact)
    )
    store.drop("alice", first.contact)
    store.drop("alice", "sip:never@registered")  # absent: no error
    assert {(b.user, b.contact) for b in store.load()} == {
        ("alice", second.contact),
        ("bob", other.contact),
    }


def test_save_replaces_the_same_user_and_contact(store):
    store.save(binding(cseq=1))
    refreshed = binding(cseq=2, expires_at=1_700_007_200.0, source_port=40000, transport="tcp")
    store.save(refreshed)
    assert store.load() == [refreshed]


def test_same_contact_for_two_users_is_two_bindings(store):
    store.save(binding(user="alice", contact="sip:desk@192.0.2.9"))
    store.save(binding(user="bob", contact="sip:desk@192.0.2.9"))
    store.drop("alice", "sip:desk@192.0.2.9")
    assert [(b.user, b.contact) for b in store.load()] == [("bob", "sip:desk@192.0.2.9")]


def test_change_feed(store):
    start = store.version()
    store.save(binding(contact="sip:a@h"))
    store.save(binding(contact="sip:b@h"))
    middle = store.version()
    store.drop("alice", "sip:a@h")
    store.save(binding(contact="sip:c@h"))
    changes = store.changes_since(start)
    assert changes.complete
    assert {b.contact for b in changes.saved} == {"sip:b@h", "sip:c@h"}
    assert changes.dropped == (("alice", "sip:a@h"),)
    assert changes.version == store.version() > middle
    later = store.changes_since(middle)
    assert [b.contact for b in later.saved] == ["sip:c@h"]
    assert later.dropped == (("alice", "sip:a@h"),)
    assert store.changes_since(store.version()).saved == ()


def test_may_have_changed_says_whether_to_ask_for_changes(store):
    seen = store.version()
    assert not store.may_have_changed(seen)
    store.save(binding(contact="sip:a@h"))
    assert store.may_have_changed(seen)
    assert not store.may_have_changed(store.changes_since(seen).version)
    store.drop("alice", "sip:absent@h")  # nothing written, no new version
    assert not store.may_have_changed(store.version())


def test_write_applies_several_changes_in_order(store):
    store.save(binding(contact="sip:old@h"))
    before = store.version()
    first = binding(contact="sip:a@h", cseq=1)
    again = binding(contact="sip:a@h", cseq=2)
    second = binding(user="bob", contact="sip:b@h")
    store.write([first, ("alice", "sip:old@h"), second, again, ("bob", "sip:never@h"), ("alice", "sip:b@h")])
    assert sorted(store.load(), key=lambda b: b.user) == [again, second]  # the later save of a@h wins
    changes = store.changes_since(before)
    assert {(b.user, b.contact, b.cseq) for b in changes.saved} == {("alice", "sip:a@h", 2), ("bob", "sip:b@h", 7)}
    assert changes.dropped == (("alice", "sip:old@h"),)
    version = store.version()
    store.write([])
    store.write([("alice", "sip:absent@h")])
    assert store.version() == version  # nothing changed, no new version


def test_write_is_all_or_nothing(tmp_path):
    with SqliteStore(tmp_path / FILENAME) as store:
        kept = binding(contact="sip:kept@h")
        store.save(kept)
        version = store.version()
        with pytest.raises(ValueError):
            store.write([binding(contact="sip:new@h"), ("alice", "sip:kept@h"), ("only one",)])
        assert store.load() == [kept]
        assert store.version() == version


def _fail_commits(store: SqliteStore, count: int) -> None:
    """Make the next ``count`` COMMITs of ``store`` fail as a full or failing
    disk would, after every statement succeeded: a save arms a deferred
    foreign key that only COMMIT checks. SQLite then keeps the transaction
    open (as it may for SQLITE_BUSY or an I/O error at COMMIT)."""
    left = [count]

    def fail() -> int:
        left[0] -= 1
        return int(left[0] >= 0)

    connection = store._db()
    connection.create_function("fail_commit", 0, fail)
    connection.execute("PRAGMA foreign_keys = ON")
    connection.executescript(
        """
        CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY);
        CREATE TEMP TABLE child (
            parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED
        );
        CREATE TEMP TRIGGER fail_commit AFTER INSERT ON main.bindings WHEN fail_commit()
        BEGIN
            INSERT INTO child (parent) VALUES (-1);
        END;
        """
    )


def test_sqlite_failed_commit_is_rolled_back_and_the_next_write_succeeds(tmp_path):
    with SqliteStore(tmp_path / FILENAME) as store:
        kept = binding(contact="sip:kept@h")
        store.save(kept)
        version = store.version()
        _fail_commits(store, 1)
        with pytest.raises(sqlite3.IntegrityError):  # the COMMIT's own error, not the ROLLBACK's
            store.write([binding(contact="sip:lost@h"), ("alice", "sip:kept@h")])
        assert not store._db().in_transaction
        assert store.load() == [kept]
        assert store.version() == version
        later = binding(contact="sip:later@h")
        store.write([later, ("alice", "sip:kept@h")])  # failed with "within a transaction" before
        assert store.load() == [later]
        changes = store.changes_since(version)
        assert changes.saved == (later,)
        assert changes.dropped == (("alice", "sip:kept@h"),)
    with SqliteStore(tmp_path / FILENAME) as store:  # and it is on disk
        assert store.load() == [later]


def test_sqlite_failed_statement_is_rolled_back_and_the_next_write_succeeds(tmp_path):
    with SqliteStore(tmp_path / FILENAME) as store:
        store._db().execute(
            "CREATE TEMP TRIGGER refuse BEFORE INSERT ON main.bindings WHEN NEW.contact = 'sip:bad@h'"
            " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
        with pytest.raises(sqlite3.IntegrityError, match="disk says no"):
            store.write([binding(contact="sip:first@h"), binding(contact="sip:bad@h")])
        assert not store._db().in_transaction
        assert store.load() == []
        good = binding(contact="sip:good@h")
        store.save(good)
        assert store.load() == [good]


def test_sqlite_failed_rollback_does_not_hide_the_error(tmp_path):
    class Connection:
        in_transaction = True

    class Cursor:
        """COMMIT fails, and so does the ROLLBACK after it."""

        connection = Connection()

        def execute(self, statement: str) -> None:
            if statement == "COMMIT":
                raise sqlite3.OperationalError("disk I/O error")
            raise sqlite3.OperationalError("cannot rollback")

    with SqliteStore(tmp_path / FILENAME) as store:
        transaction = store._write()
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error"), transaction:
            transaction._cursor = Cursor()  # type: ignore[assignment]
        store._db().execute("ROLLBACK")  # the real BEGIN the fake cursor replaced
        # A statement's error wins too.
        with pytest.raises(ValueError, match="mine"), store._write() as cursor:
            cursor.execute("INSERT INTO meta (key, value) VALUES ('x', 1)")
            raise ValueError("mine")
        assert not store._db().in_transaction
        store.save(binding())  # the lock was released and nothing is left open
        assert store.load() == [binding()]


def test_load_keeps_the_write_order_of_one_user(tmp_path):
    path = tmp_path / FILENAME
    contacts = [f"sip:{name}@h" for name in ("z", "m", "a", "q")]
    with SqliteStore(path) as store:
        store.write([binding(contact=contact) for contact in contacts])
    with SqliteStore(path) as store:
        assert [b.contact for b in store.load()] == contacts


def test_sqlite_load_shares_one_string_per_user(tmp_path):
    with SqliteStore(tmp_path / FILENAME) as store:
        store.write([binding(contact="sip:a@h"), binding(contact="sip:b@h")])
        first, second = store.load()
        assert first.user == "alice" and first.user is second.user
        assert first.source_host is second.source_host and first.user_agent is second.user_agent


def test_sqlite_survives_reopen(tmp_path):
    path = tmp_path / "sub" / "dir" / FILENAME  # parent directories are created
    saved = binding(contact="sip:alice@[2001:db8::1]:5060", source_host="2001:db8::1")
    with SqliteStore(path) as store:
        store.save(saved)
        store.save(binding(contact="sip:gone@h"))
        store.drop("alice", "sip:gone@h")
        version = store.version()
    with SqliteStore(path) as store:
        assert store.load() == [saved]
        assert store.version() == version


def test_sqlite_uses_wal_and_full_sync(tmp_path):
    with SqliteStore(tmp_path / FILENAME) as store:
        connection = store._db()
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_sqlite_two_processes_share_the_file(tmp_path):
    path = tmp_path / FILENAME
    with SqliteStore(path) as writer, SqliteStore(path) as reader:
        seen = reader.version()
        writer.save(binding(contact="sip:one@h"))
        changes = reader.changes_since(seen)
        assert [b.contact for b in changes.saved] == ["sip:one@h"]
        assert [b.contact for b in reader.load()] == ["sip:one@h"]
        writer.drop("alice", "sip:one@h")
        assert reader.changes_since(changes.version).dropped == (("alice", "sip:one@h"),)


def test_sqlite_may_have_changed_sees_another_stores_writes(tmp_path):
    # What a worker asks before each request: the word both stores map.
    path = tmp_path / FILENAME
    with SqliteStore(path) as writer, SqliteStore(path) as reader:
        seen = reader.version()
        assert not reader.may_have_changed(seen)
        writer.write([binding(contact="sip:one@h"), binding(contact="sip:two@h")])
        assert reader.may_have_changed(seen)
        seen = reader.changes_since(seen).version
        assert not reader.may_have_changed(seen)
    with SqliteStore(path) as reopened:  # the word outlives the processes, as the file does
        assert not reopened.may_have_changed(reopened.version())


def test_sqlite_a_missing_word_is_brought_up_to_the_file(tmp_path):
    # A data_dir from before the word: workers would ask SQLite on every
    # request until the next registration.
    path = tmp_path / FILENAME
    with SqliteStore(path) as store:
        store.save(binding())
    path.with_name(path.name + "-version").unlink()
    with SqliteStore(path) as reopened:
        assert not reopened.may_have_changed(reopened.version())


def test_sqlite_a_write_rolled_back_makes_readers_ask_until_the_next_one(tmp_path):
    path = tmp_path / FILENAME
    with SqliteStore(path) as writer, SqliteStore(path) as reader:
        seen = reader.version()
        _fail_commits(writer, 1)
        with pytest.raises(sqlite3.IntegrityError):
            writer.save(binding(contact="sip:lost@h"))
        assert reader.may_have_changed(seen)  # asks in vain...
        assert reader.changes_since(seen).version == seen
        later = binding(contact="sip:later@h")
        writer.save(later)  # ...and the next write, taking the same version again, is not missed
        assert reader.may_have_changed(seen)
        assert reader.changes_since(seen).saved == (later,)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from("abc"), st.booleans()), max_size=25))
def test_sqlite_a_reader_that_asks_only_when_told_misses_nothing(tmp_path_factory, steps):
    # Two writers and a reader on one file, as three workers: the reader
    # follows the server's sync (may_have_changed, then changes_since) at
    # steps of its own; whenever it is told nothing changed, its view is the
    # store's. Step: (0 or 1: that writer saves or drops contact; 2: sync).
    path = tmp_path_factory.mktemp("feed") / FILENAME
    with SqliteStore(path) as first, SqliteStore(path) as second, SqliteStore(path) as reader:
        seen = reader.version()
        view = {(b.user, b.contact): b for b in reader.load()}
        for who, contact, save in [*steps, (2, "a", True)]:
            if who < 2:
                writer = (first, second)[who]
                if save:
                    writer.save(binding(contact=f"sip:{contact}@h"))
                else:
                    writer.drop("alice", f"sip:{contact}@h")
                continue
            if reader.may_have_changed(seen):
                changes = reader.changes_since(seen)
                for user, dropped in changes.dropped:
                    view.pop((user, dropped), None)
                view.update({(b.user, b.contact): b for b in changes.saved})
                seen = changes.version
            assert not reader.may_have_changed(seen)
            assert sorted(view) == sorted((b.user, b.contact) for b in reader.load())


def _open_when_all_are_ready(path: str, barrier, results) -> None:  # noqa: ANN001 - multiprocessing objects
    barrier.wait()
    try:
        SqliteStore(path).close()
        results.put("opened")
    except sqlite3.Error as error:
        results.put(repr(error))


def test_sqlite_processes_opening_a_fresh_file_at_once_all_open_it(tmp_path):
    # As workers do on a fresh data_dir: switching a new file to WAL from
    # several processes at once made SQLite fail some of them at once with
    # "database is locked" (7 of 120 openings here) before the switch waited.
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for round_ in range(10):
        path = str(tmp_path / f"{round_}-{FILENAME}")
        barrier, results = context.Barrier(4), context.Queue()
        processes = [context.Process(target=_open_when_all_are_ready, args=(path, barrier, results))
                     for _ in range(4)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=30) for _ in processes]
        for process in processes:
            process.join(timeout=30)
        assert outcomes == ["opened"] * 4, outcomes
        with SqliteStore(path) as store:
            assert store._db().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_prunes_tombstones_and_says_so(tmp_path):
    with SqliteStore(tmp_path / FILENAME, tombstone_limit=3) as store:
        start = store.version()
        for number in range(6):
            store.save(binding(contact=f"sip:{number}@h"))
            store.drop("alice", f"sip:{number}@h")
        rows = store._db().execute("SELECT count(*) FROM bindings WHERE dropped = 1").fetchone()[0]
        assert rows == 3
        assert not store.changes_since(start).complete
        recent = store.changes_since(store.version() - 2)
        assert recent.complete
        assert recent.dropped == (("alice", "sip:5@h"),)


def test_sqlite_closed_store_refuses(tmp_path):
    store = SqliteStore(tmp_path / FILENAME)
    store.close()
    store.close()  # twice is fine
    with pytest.raises(Exception):
        store.save(binding())
    with pytest.raises(sqlite3.ProgrammingError):
        store.may_have_changed(0)


_CHILD = textwrap.dedent(
    """
    import sys, time
    from sipfork.bindings import Binding
    from sipfork.store.sqlite import SqliteStore
    store = SqliteStore(sys.argv[1])
    store.save(Binding(user="alice", contact="sip:alice@192.0.2.1:5062",
                       source_host="192.0.2.1", source_port=5062, transport="udp",
                       expires_at=2e9))
    store.save(Binding(user="bob", contact="sip:bob@192.0.2.2", source_host="192.0.2.2",
                       source_port=5060, transport="tcp", expires_at=2e9))
    store.drop("bob", "sip:bob@192.0.2.2")
    print("acknowledged", flush=True)
    time.sleep(60)
    """
)


def test_sqlite_acknowledged_binding_survives_kill_9(tmp_path):
    path = tmp_path / FILENAME
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "acknowledged"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    with SqliteStore(path) as store:
        assert [(b.user, b.contact, b.transport) for b in store.load()] == [
            ("alice", "sip:alice@192.0.2.1:5062", "udp")
        ]
