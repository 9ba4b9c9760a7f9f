"""Embedded results store: a maggma ``Store`` on one SQLite file of JSON documents.

Used for the task documents when no MongoDB is configured. Queries take MongoDB
criteria: the simple parts (equality, ``$in``, ``$gt``/``$gte``/``$lt``/``$lte``,
``$and``/``$or`` of those, on dotted paths) are turned into SQL on SQLite's JSON
functions, which can use expression indexes (:meth:`SQLiteDocStore.ensure_index`); the
rows found are then checked against the full criteria with mongomock's matcher, so the
answer is exactly MongoDB's. Only the requested fields are decoded.

Concurrency: every ``update``/``remove_docs`` (lookup included) is one ``BEGIN IMMEDIATE``
transaction
(SQLite's file lock), so writers from many processes are serialised and an upsert by
key never duplicates or loses a document.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from maggma.core import Store
from mongomock_ng.filtering import filter_applies

from perovflow.errors import StoreError

_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_CMP = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _expr(path: str) -> str:
    return f"json_extract(doc, '$.{path}')"


def _sql_value(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _cond(path: str, spec: Any) -> tuple[str, list] | None:
    """SQL for one field condition (a superset of MongoDB's match), or None."""
    if not _PATH.match(path):
        return None
    col, arr = _expr(path), f"json_type(doc, '$.{path}') = 'array'"
    if not isinstance(spec, dict):
        if spec is None:
            return f"{col} IS NULL", []
        return (f"({col} = ? OR {arr})", [_sql_value(spec)]) if _scalar(spec) else None
    parts, args = [], []
    for op, val in spec.items():
        if op in _CMP and isinstance(val, int | float) and not isinstance(val, bool):
            parts.append(f"({col} {_CMP[op]} ? OR {arr})")
            args.append(val)
        elif op == "$eq" and _scalar(val) and val is not None:
            parts.append(f"({col} = ? OR {arr})")
            args.append(_sql_value(val))
        elif op == "$in" and isinstance(val, list) and all(_scalar(v) for v in val) and val:
            marks = ",".join("?" * len(val))
            parts.append(f"({col} IN ({marks}) OR {col} IS NULL OR {arr})")
            args += [_sql_value(v) for v in val]
    return (" AND ".join(parts), args) if parts else None


def criteria_sql(criteria: dict[str, Any]) -> tuple[str, list]:
    """WHERE clause selecting a superset of the documents matching ``criteria``."""
    parts, args = [], []
    for key, spec in criteria.items():
        if key == "$and" and isinstance(spec, list):
            for sub in spec:
                sql, a = criteria_sql(sub)
                parts.append(sql)
                args += a
        elif key == "$or" and isinstance(spec, list):
            subs = [criteria_sql(sub) for sub in spec]
            if all(s[0] != "1" for s in subs):
                parts.append("(" + " OR ".join(f"({s[0]})" for s in subs) + ")")
                args += [x for s in subs for x in s[1]]
        elif not key.startswith("$"):
            cond = _cond(key, spec)
            if cond:
                parts.append(cond[0])
                args += cond[1]
    return (" AND ".join(parts) if parts else "1"), args


def _paths(criteria: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(criteria, dict):
        for key, val in criteria.items():
            if key.startswith("$"):
                for sub in val if isinstance(val, list) else [val]:
                    out |= _paths(sub)
            else:
                out.add(key)
    return out


def _put(doc: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
        if not isinstance(doc, dict):
            return
    doc[last] = value


def _get(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


class SQLiteFileStore(Store):
    """Base of the embedded maggma stores: one SQLite file ``<folder>/<collection_name>.sqlite``.

    Subclasses set :attr:`scheme` (for :attr:`name`) and create their tables in :meth:`_setup`.
    A connection is never reused across ``fork`` (it is reopened in the child).
    """

    scheme = "sqlite"
    what = "results store"

    def __init__(self, folder: str, collection_name: str, **kwargs: Any) -> None:
        self.folder = str(folder)
        self.collection_name = collection_name
        self.kwargs = kwargs
        self._con: sqlite3.Connection | None = None
        self._pid = 0
        super().__init__(**kwargs)

    @property
    def name(self) -> str:
        """A string naming this store."""
        return f"{self.scheme}://{self.folder}/{self.collection_name}"

    @property
    def _collection(self) -> sqlite3.Connection:
        if self._con is None or self._pid != os.getpid():  # never reuse a connection after fork
            self.connect(force_reset=True)
        return self._con

    def _setup(self, con: sqlite3.Connection) -> None:
        """Create the tables (and set connection options) of a new connection."""
        raise NotImplementedError

    def connect(self, force_reset: bool = False) -> None:
        """Open (and create) the SQLite file."""
        if self._con is not None and not force_reset and self._pid == os.getpid():
            return
        try:
            Path(self.folder).mkdir(parents=True, exist_ok=True)
            path = Path(self.folder) / f"{self.collection_name}.sqlite"
            self._con = sqlite3.connect(path, timeout=300, check_same_thread=False)
            self._setup(self._con)
            self._pid = os.getpid()
        except (OSError, sqlite3.Error) as exc:
            raise self.error(exc) from None

    def close(self) -> None:
        """Close the SQLite connection."""
        if self._con is not None:
            self._con.close()
            self._con = None

    def error(self, exc: BaseException) -> StoreError:
        """The one-line error for a failure of this store's file."""
        return StoreError(
            f"embedded {self.what} in {self.folder} is not usable: {type(exc).__name__}: {exc}",
            "make the folder writable, or set store.uri to a MongoDB server",
        )


class SQLiteDocStore(SQLiteFileStore):
    """maggma store of JSON documents in ``<folder>/<collection_name>.sqlite``."""

    def _setup(self, con: sqlite3.Connection) -> None:
        con.isolation_level = None  # explicit transactions only
        con.execute("CREATE TABLE IF NOT EXISTS docs (id INTEGER PRIMARY KEY, doc TEXT)")

    def _execute(self, sql: str, args: list | tuple = ()) -> list[tuple]:
        try:
            return self._collection.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self.error(exc) from None

    def _find(self, criteria: dict, fields: list[str] | None) -> Iterator[tuple[int, dict]]:
        where, args = criteria_sql(criteria)
        if fields is None:
            for rowid, text in self._execute(f"SELECT id, doc FROM docs WHERE {where}", args):
                doc = json.loads(text)
                if filter_applies(criteria, doc):
                    yield rowid, doc
            return
        paths = sorted(set(fields) | _paths(criteria))
        paths = [p for p in paths if _PATH.match(p)]
        cols = ", ".join(f"doc -> '$.{p}'" for p in paths) or "NULL"
        for row in self._execute(f"SELECT id, {cols} FROM docs WHERE {where}", args):
            doc: dict[str, Any] = {}
            for path, text in zip(paths, row[1:], strict=False):
                if text is not None:
                    _put(doc, path, json.loads(text))
            if filter_applies(criteria, doc):
                yield row[0], doc

    def query(
        self,
        criteria: dict | None = None,
        properties: dict | list | None = None,
        sort: dict | None = None,
        skip: int = 0,
        limit: int = 0,
        **kwargs: Any,
    ) -> Iterator[dict]:
        """Documents matching ``criteria`` with only ``properties`` (dotted paths) filled in."""
        props = list(properties) if properties else None
        fields = None if props is None else props + list(sort or {})
        docs = [doc for _, doc in self._find(criteria or {}, fields)]
        for key, direction in reversed(list((sort or {}).items())):
            docs.sort(key=lambda d, k=key: _sortkey(_get(d, k)), reverse=int(direction) < 0)
        end = skip + limit if limit else None
        for doc in docs[skip:end]:
            if props is not None:
                keep: dict[str, Any] = {}
                for p in props:
                    if _get(doc, p) is not None:
                        _put(keep, p, _get(doc, p))
                doc = keep
            yield doc

    def count(self, criteria: dict | None = None, hint: dict | None = None) -> int:
        """Number of documents matching ``criteria``."""
        if not criteria:
            return self._execute("SELECT COUNT(*) FROM docs")[0][0]
        return sum(1 for _ in self._find(criteria, []))

    def distinct(self, field: str, criteria: dict | None = None, all_exist: bool = False) -> list:
        """Distinct values of ``field`` (lists are flattened, as in MongoDB)."""
        values: list[Any] = []
        for _, doc in self._find(criteria or {}, [field]):
            val = _get(doc, field)
            for v in val if isinstance(val, list) else [val]:
                if v is not None and v not in values:
                    values.append(v)
        return values

    def update(self, docs: list[dict] | dict, key: list | str | None = None) -> None:
        """Insert or replace documents identified by ``key`` (one transaction)."""
        docs = [docs] if isinstance(docs, dict) else list(docs)
        keys = [key] if isinstance(key, str) else list(key or [self.key])
        con = self._collection
        try:
            con.execute("BEGIN IMMEDIATE")
            for doc in docs:
                doc = {k: v for k, v in doc.items() if k != "_id"}
                text = json.dumps(doc, default=_default)
                # look up by the first key only ("+" keeps the planner off the other indexes)
                where = " AND ".join(
                    f"{'' if i == 0 else '+'}{_expr(k)} IS ?" for i, k in enumerate(keys)
                )
                row = con.execute(
                    f"SELECT id FROM docs WHERE {where} LIMIT 1", [_get(doc, k) for k in keys]
                ).fetchone()
                if row:
                    con.execute("UPDATE docs SET doc = ? WHERE id = ?", (text, row[0]))
                else:
                    con.execute("INSERT INTO docs (doc) VALUES (?)", (text,))
            con.execute("COMMIT")
            if len(docs) >= 100:
                con.execute("PRAGMA optimize")  # refresh planner statistics after bulk writes
        except (sqlite3.Error, TypeError, ValueError) as exc:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise self.error(exc) from None

    def remove_docs(self, criteria: dict) -> None:
        """Delete the documents matching ``criteria``: found and deleted in one transaction
        (a concurrent writer waits), rolled back if anything fails."""
        con = self._collection
        try:
            con.execute("BEGIN IMMEDIATE")
            ids = [(rowid,) for rowid, _ in self._find(criteria, [])]
            con.executemany("DELETE FROM docs WHERE id = ?", ids)
            con.execute("COMMIT")
        except (sqlite3.Error, StoreError) as exc:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise exc if isinstance(exc, StoreError) else self.error(exc) from None

    def ensure_index(self, key: str, unique: bool | None = False) -> bool:
        """Create an expression index on ``key`` (a dotted path)."""
        if not _PATH.match(key):
            return False
        name = "ix_" + re.sub(r"\W", "_", key)
        self._execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON docs ({_expr(key)})')
        return True

    def groupby(self, keys: Any, criteria: dict | None = None, properties: Any = None, **kw: Any):
        """Group documents by ``keys`` (in Python)."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        groups: dict[str, tuple[dict, list]] = {}
        for doc in self.query(criteria, properties=None):
            ident = {k: _get(doc, k) for k in keys}
            groups.setdefault(json.dumps(ident, default=str), (ident, []))[1].append(doc)
        yield from groups.values()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SQLiteDocStore) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


def _sortkey(value: Any) -> tuple:
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    return (2, str(value))
