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
* Reads return a snapshot taken under the lock: a ``find()`` cursor computes (and copies)
  all its documents inside the lock when first iterated, never lazily after release.
* :func:`transaction` holds the lock for a block of operations (check-then-act such as
  de-duplication on submit) and commits them in one SQLite transaction, or none on error.

Storage and synchronisation are in :mod:`perovflow.hpc.embedded_sync`.

Limits: whole-database lock (writes are serialised), documents are scanned (no query
planner), the folder must be on a file system with working POSIX locks (local disk;
most parallel file systems; NFSv4). Multi-document transactions and change streams are
not offered. For many concurrent writers use a real MongoDB (``store.uri``).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mongomock_ng as mongomock
from pymongo.errors import DuplicateKeyError

from perovflow.hpc.embedded_sync import LOCK_TIMEOUT_S, _ServerStore, state_counts

__all__ = ["LOCK_TIMEOUT_S", "SyncedClient", "embedded_client", "state_counts", "transaction"]


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
        cache = self._server.op.unique_cache
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

    def _get_dataset(self, spec: Any, sort: Any, fields: Any, as_class: Any) -> Iterator[dict]:
        """The documents a cursor returns: copied under the lock, all at once."""
        with self._server.operation(self.database.name, self.name, False):
            docs = list(super()._get_dataset(spec, sort, fields, as_class))
        return iter(docs)

    def _iter_documents(self, filter: Any) -> Iterator[dict]:
        # The documents an update visits are modified in place: record them as touched.
        for doc in super()._iter_documents(filter):
            if self._server.op.writing:
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


def transaction(collection: Any) -> contextlib.AbstractContextManager[None]:
    """Run a block of operations on ``collection``'s embedded database atomically: one lock
    and one SQLite transaction (nothing committed if the block raises)."""
    return collection.database.client._store.transaction()
