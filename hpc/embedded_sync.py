"""Storage of the embedded database: mongomock's in-memory stores kept in step with SQLite.

See :mod:`perovflow.hpc.embedded` for the design. This module holds the part that talks
to SQLite: the inter-process lock, applying rows committed by other processes
(:meth:`_ServerStore._sync`) and committing the documents an operation touched
(:meth:`_ServerStore._flush`). The bookkeeping of the running operation (nesting depth,
whether it writes, what it touched) lives in a per-thread :class:`_OpState`, so a thread
never sees or changes another thread's operation.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson
from filelock import FileLock, Timeout
from mongomock_ng import store as mstore

from perovflow.errors import StoreError

LOCK_TIMEOUT_S = 300.0
#: Per collection, a dotted path copied into an indexed SQLite column (with ``state``) so
#: that :func:`state_counts` answers without loading documents.
TAG_FIELDS = {"fireworks": "spec._perovflow.study"}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (db TEXT, coll TEXT, key BLOB, rev INTEGER, body BLOB,
                                 state TEXT, tag TEXT, PRIMARY KEY (db, coll, key));
CREATE INDEX IF NOT EXISTS docs_rev ON docs (db, coll, rev);
CREATE INDEX IF NOT EXISTS docs_state ON docs (db, coll, tag, state);
CREATE TABLE IF NOT EXISTS idx (db TEXT, coll TEXT, name TEXT, rev INTEGER, body BLOB,
                                PRIMARY KEY (db, coll, name));
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER);
INSERT OR IGNORE INTO meta VALUES ('rev', 0);
"""


def _key(doc_id: Any) -> bytes:
    return bson.encode({"k": doc_id})


class _OpState(threading.local):
    """The running operation of one thread (all fields are per thread)."""

    def __init__(self) -> None:
        self.depth = 0
        self.writing = False
        self.dirty: dict[tuple[str, str], set[Any]] = {}
        self.dirty_idx: set[tuple[str, str, str]] = set()
        self.synced: set[tuple[str, str]] = set()
        self.unique_cache: dict[tuple[str, str, str], dict] = {}

    def reset(self) -> None:
        self.depth, self.writing = 0, False
        self.dirty, self.dirty_idx, self.synced, self.unique_cache = {}, set(), set(), {}


class _CollectionStore(mstore.CollectionStore):
    """mongomock collection storage that reports which documents an operation touched."""

    def __init__(self, name: str, server: _ServerStore, db: str) -> None:
        super().__init__(name)
        self._server, self._db = server, db

    def _mark(self, key: Any) -> None:
        self._server.op.dirty.setdefault((self._db, self.name), set()).add(key)

    def __setitem__(self, key: Any, val: Any) -> None:
        self._mark(key)
        super().__setitem__(key, val)

    def __delitem__(self, key: Any) -> None:
        self._mark(key)
        super().__delitem__(key)

    def drop(self) -> None:
        for key in list(self._documents):
            self._mark(key)
        for name in list(self.indexes):
            self._server.op.dirty_idx.add((self._db, self.name, name))
        super().drop()

    def create_index(self, index_name: str, index_dict: dict) -> None:
        self._server.op.dirty_idx.add((self._db, self.name, index_name))
        super().create_index(index_name, index_dict)

    def drop_index(self, index_name: str) -> None:
        self._server.op.dirty_idx.add((self._db, self.name, index_name))
        super().drop_index(index_name)


class _DatabaseStore(mstore.DatabaseStore):
    def __init__(self, server: _ServerStore, name: str) -> None:
        super().__init__()
        self._server, self._name = server, name

    def __getitem__(self, col_name: str) -> _CollectionStore:
        col = self._collections.get(col_name)
        if col is None:
            col = self._collections[col_name] = _CollectionStore(col_name, self._server, self._name)
        return col

    def rename(self, name: str, new_name: str) -> None:
        raise NotImplementedError("renaming a collection is not supported by the embedded store")


class _ServerStore(mstore.ServerStore):
    """All databases of one embedded folder, synchronised with its SQLite file."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.seen: dict[tuple[str, str], int] = {}
        self.op = _OpState()
        self.tlock = threading.RLock()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.flock = FileLock(str(folder / "embedded.lock"), timeout=LOCK_TIMEOUT_S)
            with self.flock:
                con = self._connect()
                con.executescript(_SCHEMA)
                con.close()
        except (OSError, sqlite3.Error, Timeout) as exc:
            raise _unreachable(folder, exc) from None

    def __getitem__(self, db_name: str) -> _DatabaseStore:
        db = self._databases.get(db_name)
        if db is None:
            db = self._databases[db_name] = _DatabaseStore(self, db_name)
        return db

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.folder / "embedded.sqlite", timeout=LOCK_TIMEOUT_S)
        con.execute("PRAGMA synchronous=FULL")
        return con

    @contextlib.contextmanager
    def operation(self, db: str, coll: str, write: bool, rollback: bool = False) -> Iterator[None]:
        """Run one pymongo operation on ``db.coll`` atomically (see the module docstring).

        Operations nested inside one (or inside :meth:`transaction`) join it: everything
        they write is committed together, in one SQLite transaction, when the outermost
        one ends. With ``rollback``, an exception commits nothing (the in-memory copy is
        dropped and reloaded from disk by the next operation).
        """
        op = self.op
        with self.tlock:
            if op.depth:  # nested call inside an operation: already locked
                op.writing = op.writing or write
                if coll and (db, coll) not in op.synced:
                    self._sync(db, coll)
                op.depth += 1
                try:
                    yield
                finally:
                    op.depth -= 1
                return
            try:
                self.flock.acquire()
            except (OSError, Timeout) as exc:
                raise _unreachable(self.folder, exc) from None
            op.depth, op.writing = 1, write
            try:
                if coll:
                    self._sync(db, coll)
                try:
                    yield
                except BaseException:
                    if rollback:
                        self._forget()
                        op.dirty, op.dirty_idx = {}, set()
                    raise
                finally:  # a failed single write may have changed documents: keep them too
                    if op.writing and (op.dirty or op.dirty_idx):
                        self._flush()
            finally:
                op.reset()
                self.flock.release()

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Hold the lock for a block of operations: committed together at its end, or (on
        an exception) not at all."""
        return self.operation("", "", True, rollback=True)

    def _sync(self, db: str, coll: str) -> None:
        """Apply the rows of ``db.coll`` committed since this process last looked."""
        seen = self.seen.get((db, coll), 0)
        try:
            con = self._connect()
            try:
                rows = con.execute(
                    "SELECT key, body FROM docs WHERE db=? AND coll=? AND rev > ? ORDER BY rev",
                    (db, coll, seen),
                ).fetchall()
                irows = con.execute(
                    "SELECT name, body FROM idx WHERE db=? AND coll=? AND rev > ?", (db, coll, seen)
                ).fetchall()
                rev = con.execute("SELECT v FROM meta WHERE k='rev'").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise _unreachable(self.folder, exc) from None
        cstore = self[db][coll]
        with cstore._rwlock.writer():
            for key, body in rows:
                doc_id = bson.decode(key)["k"]
                if body is None:
                    cstore._documents.pop(doc_id, None)
                else:
                    cstore._documents[doc_id] = bson.decode(body)
        for name, body in irows:
            if body is None:
                cstore.indexes.pop(name, None)
            else:
                mstore.CollectionStore.create_index(cstore, name, _index_from_bson(body))
        self.seen[db, coll] = rev
        self.op.synced.add((db, coll))

    def _flush(self) -> None:
        try:
            con = self._connect()
            try:
                with con:
                    con.execute("BEGIN IMMEDIATE")
                    rev = con.execute("SELECT v FROM meta WHERE k='rev'").fetchone()[0] + 1
                    con.executemany(
                        "INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?, ?, ?)",
                        self._doc_rows(rev),
                    )
                    con.executemany(
                        "INSERT OR REPLACE INTO idx VALUES (?, ?, ?, ?, ?)", self._idx_rows(rev)
                    )
                    con.execute("UPDATE meta SET v=? WHERE k='rev'", (rev,))
            finally:
                con.close()
        except (sqlite3.Error, OSError, bson.errors.InvalidDocument) as exc:
            self._forget()
            raise _unreachable(self.folder, exc) from None
        for db_coll in self.op.synced:  # read under this lock: nothing else was written since
            self.seen[db_coll] = rev

    def _doc_rows(self, rev: int) -> Iterator[tuple]:
        for (db, coll), keys in self.op.dirty.items():
            docs = self[db][coll]._documents
            tag_path = TAG_FIELDS.get(coll, "").split(".")
            for key in keys:
                doc = docs.get(key)
                body = None if doc is None else bson.encode(doc)
                state = tag = None
                if doc is not None:
                    state, tag = doc.get("state"), _dig(doc, tag_path)
                    state = state if isinstance(state, str) else None
                    tag = tag if isinstance(tag, str) else None
                yield db, coll, _key(key), rev, body, state, tag

    def _idx_rows(self, rev: int) -> Iterator[tuple]:
        for db, coll, name in self.op.dirty_idx:
            spec = self[db][coll].indexes.get(name)
            yield db, coll, name, rev, None if spec is None else _index_to_bson(spec)

    def _forget(self) -> None:
        """Drop the in-memory copy (after a failed commit); the next operation reloads."""
        for dbstore in self._databases.values():
            for cstore in dbstore._collections.values():
                with cstore._rwlock.writer():
                    cstore._documents.clear()
                cstore.indexes.clear()
        self.seen = {}


def _dig(doc: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def state_counts(folder: str | Path, db: str, coll: str, tag: str | None = None) -> dict:
    """Committed documents of ``db.coll`` counted by their ``state`` field, straight from
    SQLite (nothing loaded); ``tag`` restricts to documents whose tag field (see
    :data:`TAG_FIELDS`) equals it."""
    path = Path(folder).expanduser().resolve() / "embedded.sqlite"
    sql = "SELECT state, COUNT(*) FROM docs WHERE db=? AND coll=? AND body IS NOT NULL"
    args: list[Any] = [db, coll]
    if tag is not None:
        sql, args = sql + " AND tag=?", [*args, tag]
    try:
        con = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S)
        try:
            return dict(con.execute(sql + " GROUP BY state", args).fetchall())
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise _unreachable(Path(folder), exc) from None


def _index_to_bson(spec: dict) -> bytes:
    spec = dict(spec)
    spec["key"] = [list(pair) for pair in spec.get("key", [])]
    return bson.encode(spec)


def _index_from_bson(body: bytes) -> dict:
    spec = bson.decode(body)
    spec["key"] = [tuple(pair) for pair in spec.get("key", [])]
    return spec


def _unreachable(folder: Path, exc: BaseException) -> StoreError:
    return StoreError(
        f"embedded store in {folder} is not usable: {type(exc).__name__}: {exc}",
        "make the folder writable (and on a file system with file locks), "
        "or set store.uri to a MongoDB server",
    )
