"""An embedded, multi-process-safe MongoDB stand-in: mongomock kept in step with SQLite.

Why: the results store and the FireWorks LaunchPad need a Mongo-like database, but a
laptop or a small cluster may have no MongoDB server. mongomock implements the pymongo
API in memory; this module makes it durable and safe for several processes (SLURM jobs,
``perovflow launch``, the CLI) working on the same folder at once.

How it works
------------
* Every document lives as one BSON row in ``<folder>/embedded.sqlite``; each row carries
  the revision number of the operation that last wrote it (deletions leave a tombstone).
* Every pymongo operation on a :class:`SyncedCollection` runs under one inter-process
  lock (``filelock`` on ``<folder>/embedded.lock``, plus a thread lock). Inside it the
  process first applies the rows newer than the last revision it has seen (a cheap
  indexed query), then runs the operation with mongomock, then - for a write - commits
  exactly the documents the operation touched, in one SQLite transaction, under a new
  revision number.
* So each operation (including read-modify-write ones such as ``find_one_and_update``)
  is atomic across processes, reads see every committed write, and no update can be
  lost or applied twice. A failed commit raises :class:`~perovflow.errors.StoreError`
  and drops this process's in-memory copy, so memory never differs from disk.

Limits: whole-database lock (writes are serialised), documents are scanned (no query
planner), the folder must be on a file system with working POSIX locks (local disk;
most parallel file systems; NFSv4). Multi-document transactions and change streams are
not offered. For many concurrent writers use a real MongoDB (``store.uri``).
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bson
import mongomock_ng as mongomock
from filelock import FileLock, Timeout
from mongomock_ng import store as mstore
from pymongo.errors import DuplicateKeyError

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


class _CollectionStore(mstore.CollectionStore):
    """mongomock collection storage that reports which documents an operation touched."""

    def __init__(self, name: str, server: _ServerStore, db: str) -> None:
        super().__init__(name)
        self._server, self._db = server, db

    def _mark(self, key: Any) -> None:
        self._server.dirty.setdefault((self._db, self.name), set()).add(key)

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
            self._server.dirty_idx.add((self._db, self.name, name))
        super().drop()

    def create_index(self, index_name: str, index_dict: dict) -> None:
        self._server.dirty_idx.add((self._db, self.name, index_name))
        super().create_index(index_name, index_dict)

    def drop_index(self, index_name: str) -> None:
        self._server.dirty_idx.add((self._db, self.name, index_name))
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
        self.dirty: dict[tuple[str, str], set[Any]] = {}
        self.dirty_idx: set[tuple[str, str, str]] = set()
        self.seen: dict[tuple[str, str], int] = {}
        self.depth = 0
        self.writing = False
        self.synced: set[tuple[str, str]] = set()
        self.unique_cache: dict[tuple[str, str, str], dict] = {}
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
    def operation(self, db: str, coll: str, write: bool) -> Iterator[None]:
        """Run one pymongo operation on ``db.coll`` atomically (see the module docstring)."""
        with self.tlock:
            if self.depth:  # nested call inside an operation: already locked
                self.writing = self.writing or write
                if (db, coll) not in self.synced:
                    self._sync(db, coll)
                self.depth += 1
                try:
                    yield
                finally:
                    self.depth -= 1
                return
            try:
                self.flock.acquire()
            except (OSError, Timeout) as exc:
                raise _unreachable(self.folder, exc) from None
            self.depth, self.writing = 1, write
            try:
                self._sync(db, coll)
                try:
                    yield
                finally:  # a failed write may have changed some documents: keep them too
                    if self.writing and (self.dirty or self.dirty_idx):
                        self._flush()
            finally:
                self.depth, self.writing = 0, False
                self.dirty.clear()
                self.dirty_idx.clear()
                self.synced.clear()
                self.unique_cache.clear()
                self.flock.release()

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
        for key, body in rows:
            doc_id = bson.decode(key)["k"]
            with cstore._rwlock.writer():
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
        self.synced.add((db, coll))

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
        for db_coll in self.synced:  # read under this lock: nothing else was written since
            self.seen[db_coll] = rev

    def _doc_rows(self, rev: int) -> Iterator[tuple]:
        for (db, coll), keys in self.dirty.items():
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
        for db, coll, name in self.dirty_idx:
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


def _op(write: bool) -> Callable:
    def deco(meth: Callable) -> Callable:
        @functools.wraps(meth)
        def wrapper(self: SyncedCollection, *args: Any, **kwargs: Any) -> Any:
            with self._server.operation(self.database.name, self.name, write):
                return meth(self, *args, **kwargs)

        return wrapper

    return deco


_WRITES = [
    "insert_one",
    "insert_many",
    "update_one",
    "update_many",
    "replace_one",
    "delete_one",
    "delete_many",
    "find_one_and_update",
    "find_one_and_replace",
    "find_one_and_delete",
    "bulk_write",
    "create_index",
    "create_indexes",
    "drop_index",
    "drop_indexes",
    "drop",
]
_READS = [
    "find_one",
    "count_documents",
    "estimated_document_count",
    "distinct",
    "aggregate",
    "index_information",
    "list_indexes",
    "_get_dataset",
]


class SyncedCollection(mongomock.Collection):
    """A mongomock collection whose every operation is atomic across processes."""

    @property
    def _server(self) -> _ServerStore:
        return self.database.client._store

    def with_options(self, *args: Any, **kwargs: Any) -> SyncedCollection:
        """Return this collection (options are accepted and ignored)."""
        return self

    def _ensure_uniques(self, new_data: dict) -> None:
        """mongomock's unique-index check, with a per-operation hash table (O(1), not O(N))."""
        indexes = [
            (name, ix)
            for name, ix in self._store.indexes.items()
            if ix.get("unique") and ix.get("partialFilterExpression") is None
        ]
        if len(indexes) != sum(1 for ix in self._store.indexes.values() if ix.get("unique")):
            super()._ensure_uniques(new_data)  # partial indexes: mongomock's own scan
            return
        cache = self._server.unique_cache
        for name, ix in indexes:
            key, sparse = ix.get("key"), ix.get("sparse")
            new = self._compute_index_entries(new_data, key, sparse)
            if new is None:
                continue
            table = cache.get((self.database.name, self.name, name))
            if table is None:
                table = cache[self.database.name, self.name, name] = {}
                for doc in self._store.documents:
                    for entry in self._compute_index_entries(doc, key, sparse) or ():
                        table.setdefault(entry, set()).add(doc["_id"])
            for entry in new:
                for other in table.get(entry, ()):
                    if other == new_data.get("_id") or other not in self._store:
                        continue
                    if entry in (
                        self._compute_index_entries(self._store[other], key, sparse) or ()
                    ):
                        raise DuplicateKeyError(
                            "E11000 Duplicate Key Error", 11000, {"keyPattern": dict(key)}
                        )
            for entry in new:
                table.setdefault(entry, set()).add(new_data.get("_id"))

    def _iter_documents(self, filter: Any) -> Iterator[dict]:
        # The documents an update visits are modified in place: record them as touched.
        for doc in super()._iter_documents(filter):
            if self._server.writing:
                self._store._mark(doc["_id"])
            yield doc


for _name in _WRITES:
    setattr(SyncedCollection, _name, _op(True)(getattr(mongomock.Collection, _name)))
for _name in _READS:
    setattr(SyncedCollection, _name, _op(False)(getattr(mongomock.Collection, _name)))


class SyncedDatabase(mongomock.Database):
    """A mongomock database handing out :class:`SyncedCollection` objects."""

    def get_collection(self, name: str, *args: Any, **kwargs: Any) -> SyncedCollection:
        """Return the collection ``name``."""
        coll = self._collection_accesses.get(name)
        if coll is None:
            self._ensure_valid_collection_name(name)
            coll = self._collection_accesses[name] = SyncedCollection(
                self, name=name, _db_store=self._store
            )
        return coll

    def list_collection_names(self, *args: Any, **kwargs: Any) -> list[str]:
        """Names of the collections holding documents or indexes."""
        server = self.client._store
        with server.operation(self.name, "", False):
            con = server._connect()
            try:
                sql = "SELECT DISTINCT coll FROM docs WHERE db=? AND body IS NOT NULL"
                names = [r[0] for r in con.execute(sql, (self.name,))]
            finally:
                con.close()
        return sorted(n for n in names if not n.startswith("system."))

    def drop_collection(self, name_or_collection: Any, session: Any = None) -> None:
        """Delete a collection and its indexes."""
        name = getattr(name_or_collection, "name", name_or_collection)
        with self.client._store.operation(self.name, name, True):
            super().drop_collection(name_or_collection, session)


class SyncedClient(mongomock.MongoClient):
    """A mongomock client whose data lives in ``folder`` and is shared by processes."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__(_store=_ServerStore(Path(folder)))

    def get_database(self, name: str | None = None, *args: Any, **kwargs: Any) -> SyncedDatabase:
        """Return the database ``name``."""
        name = name or "perovflow"
        db = self._database_accesses.get(name)
        if db is None:
            db = self._database_accesses[name] = SyncedDatabase(
                self, name, _store=self._store[name]
            )
        return db


_CLIENTS: dict[Path, SyncedClient] = {}
_CLIENTS_LOCK = threading.Lock()


def embedded_client(folder: str | Path) -> SyncedClient:
    """Return the process-wide client of the embedded database in ``folder``."""
    path = Path(folder).expanduser().resolve()
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(path)
        if client is None:
            client = _CLIENTS[path] = SyncedClient(path)
        return client
