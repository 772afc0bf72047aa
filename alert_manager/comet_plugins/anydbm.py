"""Comet's duplicate-detection database on SQLite, in place of ``dbm.dumb``.

Comet 3.1.0's ``comet/utility/event_db.py`` does ``import anydbm`` (its Python 2 name) before falling back to
``dbm``, and opens then closes the database of an IVORN authority for **every packet**. On a Python built
without ``_gdbm``/``_dbm`` (pyenv's, this project's CI) ``dbm`` is ``dbm.dumb``, whose open reads the whole
index and whose close rewrites it: the cost per packet grows with the number of packets seen (measured:
3.6 ms with an empty database, 10 ms after 1000 packets, 21 ms after 2000; Comet keeps 30 days, so a
month of GCN traffic would cost each packet tens to hundreds of milliseconds in Comet's reactor, before
PyROS sees it).

This module is on Comet's PYTHONPATH only (``alert_manager/comet_plugins``, see ``comet_process``), so Comet
imports it as ``anydbm``. It offers what Comet uses of a dbm (``open(path, flag)``, ``in``, get/set/del
item, ``keys()``, ``close()``) on one SQLite file per authority (``<path>.sqlite3``, WAL, one connection
kept per file): a lookup and an insert cost tens of microseconds whatever the size. An existing
``dbm.dumb`` database at the same path (``<path>.dir``/``.dat``) is imported the first time.

Durability: ``synchronous=NORMAL`` (a power cut may forget the last entries: Comet might then forward a
duplicate, which PyROS recognises by its IVORN anyway).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator

error = (sqlite3.Error, KeyError)  # the dbm modules' `error`
SUFFIX = ".sqlite3"

_connections: dict[str, tuple[sqlite3.Connection, threading.RLock]] = {}
_registry_lock = threading.Lock()


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _connect(path: str, flag: str) -> tuple[sqlite3.Connection, threading.RLock]:
    file = path + SUFFIX
    with _registry_lock:
        if file in _connections:
            return _connections[file]
        if flag.startswith("r") and not os.path.exists(file) and not os.path.exists(path + ".dir"):
            raise sqlite3.OperationalError(f"no database at {file}")
        conn = sqlite3.connect(file, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        created = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone() is None
        conn.execute("CREATE TABLE IF NOT EXISTS events (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
        if created and os.path.exists(path + ".dir"):
            _import_dumb(conn, path)
        _connections[file] = (conn, threading.RLock())
        return _connections[file]


def _import_dumb(conn: sqlite3.Connection, path: str) -> None:
    """Carry over the entries of a ``dbm.dumb`` database left by an earlier run (same path)."""
    import dbm.dumb

    old = dbm.dumb.open(path, "r")
    try:
        rows = [(_as_bytes(key), _as_bytes(old[key])) for key in old.keys()]
    finally:
        old.close()
    with conn:
        conn.execute("BEGIN")
        conn.executemany("INSERT OR REPLACE INTO events (key, value) VALUES (?, ?)", rows)


class Database:
    """One authority's database, as a dbm object (keys and values are stored as bytes)."""

    def __init__(self, path: str, flag: str = "c") -> None:
        self._conn, self._lock = _connect(path, flag)
        self._readonly = flag.startswith("r")

    def __contains__(self, key: str | bytes) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM events WHERE key = ?", (_as_bytes(key),)).fetchone() is not None

    def __getitem__(self, key: str | bytes) -> bytes:
        with self._lock:
            row = self._conn.execute("SELECT value FROM events WHERE key = ?", (_as_bytes(key),)).fetchone()
        if row is None:
            raise KeyError(key)
        return bytes(row[0])

    def __setitem__(self, key: str | bytes, value: str | bytes) -> None:
        if self._readonly:
            raise sqlite3.OperationalError("database opened read-only")
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO events (key, value) VALUES (?, ?)",
                               (_as_bytes(key), _as_bytes(value)))

    def __delitem__(self, key: str | bytes) -> None:
        with self._lock:
            if self._conn.execute("DELETE FROM events WHERE key = ?", (_as_bytes(key),)).rowcount == 0:
                raise KeyError(key)

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.keys())

    def keys(self) -> list[bytes]:
        with self._lock:
            return [bytes(row[0]) for row in self._conn.execute("SELECT key FROM events")]

    def get(self, key: str | bytes, default: bytes | None = None) -> bytes | None:
        try:
            return self[key]
        except KeyError:
            return default

    def close(self) -> None:
        """Comet closes after every packet: the connection is kept for the next one (every write is committed)."""

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(path: str, flag: str = "r", mode: int = 0o666) -> Database:  # noqa: A001, ARG001 - the dbm signature
    return Database(os.fspath(path), flag)
