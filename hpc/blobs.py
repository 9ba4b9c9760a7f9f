"""Embedded store for big arrays (the JobStore's ``data`` store): one SQLite row per blob.

jobflow moves the fields of ``@job(data=BIG_FIELDS)`` jobs to an additional store as
documents ``{"blob_uuid", "job_uuid", "job_index", "data"}`` and reads them back by
``blob_uuid``. Keeping them out of the mirrored document database means a worker never
loads other jobs' arrays. Each row is written in its own SQLite transaction, so several
processes may write at once; a blob is replaced, never duplicated, on re-write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import bson
from mongomock_ng.filtering import filter_applies

from perovflow.hpc.sqlstore import SQLiteFileStore

_KEYS = ("blob_uuid", "job_uuid", "job_index")
_SCHEMA = """CREATE TABLE IF NOT EXISTS blobs (blob_uuid TEXT PRIMARY KEY, job_uuid TEXT,
    job_index INTEGER, body BLOB);
CREATE INDEX IF NOT EXISTS blobs_job ON blobs (job_uuid, job_index);"""


class BlobStore(SQLiteFileStore):
    """maggma store of blob documents in ``<folder>/<collection_name>.sqlite``.

    Queries on ``blob_uuid``, ``job_uuid`` and ``job_index`` (equality or ``$in``) are
    answered by SQLite indexes; any other criteria are applied to the decoded documents.
    """

    scheme = "blobs"
    what = "data store"

    def __init__(self, folder: str, collection_name: str = "data", **kwargs: Any) -> None:
        super().__init__(folder, collection_name, **kwargs)

    def _setup(self, con: sqlite3.Connection) -> None:
        con.executescript(_SCHEMA)

    def _rows(self, criteria: dict) -> Iterator[dict]:
        where, args = [], []
        for key in _KEYS:
            value = criteria.get(key)
            if isinstance(value, dict) and set(value) == {"$in"}:
                where.append(f"{key} IN ({','.join('?' * len(value['$in']))})")
                args.extend(value["$in"])
            elif value is not None and not isinstance(value, dict):
                where.append(f"{key} = ?")
                args.append(value)
        sql = "SELECT body FROM blobs" + (f" WHERE {' AND '.join(where)}" if where else "")
        try:
            rows = self._collection.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self.error(exc) from None
        for (body,) in rows:
            doc = bson.decode(body)
            if filter_applies(criteria, doc):
                yield doc

    def query(
        self,
        criteria: dict | None = None,
        properties: dict | list | None = None,
        sort: dict | None = None,
        skip: int = 0,
        limit: int = 0,
    ) -> Iterator[dict]:
        """Documents matching ``criteria`` (projection by top-level ``properties``)."""
        docs = list(self._rows(criteria or {}))
        for key, direction in reversed(list((sort or {}).items())):
            docs.sort(key=lambda d, k=key: (d.get(k) is None, d.get(k)), reverse=direction < 0)
        docs = docs[skip : skip + limit if limit else None]
        keep = list(properties) if properties else None
        for doc in docs:
            yield {k: v for k, v in doc.items() if k in keep} if keep else doc

    def count(self, criteria: dict | None = None, hint: dict | None = None) -> int:
        """Number of documents matching ``criteria``."""
        return sum(1 for _ in self._rows(criteria or {}))

    def distinct(self, field: str, criteria: dict | None = None, all_exist: bool = False) -> list:
        """Distinct values of a top-level ``field``."""
        values = []
        for doc in self._rows(criteria or {}):
            if field in doc and doc[field] not in values:
                values.append(doc[field])
        return values

    def update(self, docs: list[dict] | dict, key: list | str | None = None) -> None:
        """Insert or replace blobs (identified by ``blob_uuid``) in one transaction."""
        docs = [docs] if isinstance(docs, dict) else docs
        rows = [
            (d["blob_uuid"], d.get("job_uuid"), d.get("job_index"), bson.encode(_plain(d)))
            for d in docs
        ]
        try:
            with self._collection as con:
                con.executemany("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?, ?)", rows)
        except (sqlite3.Error, KeyError) as exc:
            raise self.error(exc) from None

    def remove_docs(self, criteria: dict) -> None:
        """Delete the blobs matching ``criteria``: found and deleted in one transaction,
        rolled back if anything fails."""
        con = self._collection
        try:
            with con:  # commits, or rolls back on an exception
                con.execute("BEGIN IMMEDIATE")
                uuids = [d["blob_uuid"] for d in self._rows(criteria)]
                con.executemany("DELETE FROM blobs WHERE blob_uuid = ?", [(u,) for u in uuids])
        except sqlite3.Error as exc:
            raise self.error(exc) from None

    def ensure_index(self, key: str, unique: bool = False) -> bool:
        """Indexes exist for blob_uuid, job_uuid and job_index only."""
        return key in _KEYS

    def groupby(self, keys: Any, criteria: dict | None = None, **kwargs: Any) -> Iterator:
        """Not needed for blobs."""
        raise NotImplementedError("BlobStore does not group documents")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlobStore) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


def _plain(doc: dict) -> dict:
    """BSON cannot hold numpy arrays or tuples: use monty's JSON-safe form."""
    from monty.json import jsanitize

    return jsanitize(doc, strict=False, allow_bson=True)
