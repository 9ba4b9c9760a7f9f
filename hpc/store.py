"""The results store: one jobflow ``JobStore`` for every perovflow job.

API
---
``get_job_store(settings=None) -> jobflow.JobStore``
    Task documents go to the docs store; the big arrays of ``@job(data=BIG_FIELDS)`` jobs
    go to the additional store named ``"data"``. Call ``store.connect()`` before use
    (jobflow's ``run_locally`` and the FireWorks task do it for you).
``use_job_store(settings=None) -> jobflow.JobStore``
    Same, and installs it as ``jobflow.SETTINGS.JOB_STORE`` (what FireWorks tasks use).
``redact(uri) -> str``
    A MongoDB URI with the password replaced by ``***`` (for messages and logs).

Backends
--------
* ``settings.store.uri`` set: MongoDB. Docs in ``<database>.<collection>``, data in GridFS
  ``<collection>_data``; indexes on the query fields (:data:`INDEX_FIELDS`). A server that
  does not answer within 5 s raises :class:`~perovflow.errors.StoreError` (one line, no
  password).
* otherwise: the embedded store in ``<project_dir>/store``, no server: task documents in
  ``<collection>.sqlite`` (:mod:`perovflow.hpc.sqlstore`: MongoDB criteria, SQL on JSON with
  expression indexes), blobs in ``<collection>_data.sqlite`` (:mod:`perovflow.hpc.blobs`).
  Every write is one SQLite transaction: several SLURM jobs may write at once and no
  update is lost or duplicated. Writers are serialised (one file lock), so for hundreds
  of simultaneous writers or millions of documents use MongoDB.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from maggma.stores import GridFSStore, MongoStore

from perovflow.errors import StoreError

if TYPE_CHECKING:
    from jobflow import JobStore

    from perovflow.settings import Settings

#: Fields of the jobflow output documents that queries filter on (indexed).
INDEX_FIELDS = [
    "uuid",
    "index",
    "name",
    "output.formula",
    "output.labels.study",
    "output.code",
    "output.protocol",
    "output.calc_type",
    "output.calc_hash",
    "output.charge",
    "output.result_type",
    "metadata.study",
]
SERVER_TIMEOUT_MS = 5000


def redact(uri: str) -> str:
    """Return ``uri`` with any password replaced by ``***``."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", str(uri))


class _SafeMongoStore(MongoStore):
    """MongoStore whose name never shows the password."""

    @property
    def name(self) -> str:
        """A string naming this store (password redacted)."""
        return redact(super().name)


class _SafeGridFSStore(GridFSStore):
    """GridFSStore whose name never shows the password."""

    @property
    def name(self) -> str:
        """A string naming this store (password redacted)."""
        return redact(super().name)


def get_job_store(settings: Settings | None = None) -> JobStore:
    """Return the JobStore described by ``settings`` (see the module docstring).

    Raises
    ------
    StoreError
        If the MongoDB server does not answer or the embedded folder is not writable.
    """
    from jobflow import JobStore

    from perovflow.hpc.blobs import BlobStore
    from perovflow.hpc.sqlstore import SQLiteDocStore
    from perovflow.settings import get_settings

    settings = settings or get_settings()
    cfg = settings.store
    if cfg.uri:
        kwargs = {"mongoclient_kwargs": {"serverSelectionTimeoutMS": SERVER_TIMEOUT_MS}}
        docs = _SafeMongoStore(cfg.database, cfg.collection, uri=cfg.uri, **kwargs)
        data = _SafeGridFSStore(cfg.database, f"{cfg.collection}_data", uri=cfg.uri, **kwargs)
        _check_server(docs, cfg.uri)
    else:
        folder = str(settings.resolved(Path(settings.project_dir)) / "store")
        docs = SQLiteDocStore(folder, cfg.collection)
        data = BlobStore(folder, f"{cfg.collection}_data")
    store = JobStore(docs, additional_stores={"data": data})
    ensure_indexes(store)
    return store


def use_job_store(settings: Settings | None = None) -> JobStore:
    """Build the JobStore and make it jobflow's default (``SETTINGS.JOB_STORE``)."""
    import jobflow

    store = get_job_store(settings)
    jobflow.SETTINGS.JOB_STORE = store
    return store


def ensure_indexes(store: JobStore) -> None:
    """Create the query indexes (:data:`INDEX_FIELDS`) on the docs store."""
    store.docs_store.connect()
    try:
        for key in INDEX_FIELDS:
            store.docs_store.ensure_index(key)
        if isinstance(store.docs_store, _SafeMongoStore):  # wildcard index for labels.*
            store.docs_store._collection.create_index([("output.labels.$**", 1)])
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(
            f"cannot create indexes on the results store: {type(exc).__name__}: "
            f"{redact(str(exc)).splitlines()[0]}",
            "check that the MongoDB user may create indexes",
        ) from None


def _check_server(store: MongoStore, uri: str) -> None:
    try:
        store.connect()
        store._collection.database.client.admin.command("ping")
    except Exception as exc:
        raise StoreError(
            f"MongoDB at {redact(uri)} does not answer ({type(exc).__name__})",
            "start the server, check store.uri in the config file, or unset store.uri "
            "to use the embedded store",
        ) from None


class StoreDocuments:
    """The results store as a :class:`perovflow.documents.DocumentSource` (for analysis)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    def _query(self, criteria: dict, one: bool) -> list[dict]:
        store = get_job_store(self._settings)
        store.connect()
        try:
            if one:
                doc = store.query_one(criteria, load=True, sort={"index": -1})
                return [doc] if doc is not None else []
            return list(store.query(criteria, load=True))
        finally:
            store.close()

    def job_document(self, task_id: str) -> dict | None:
        """The newest job document with uuid ``task_id`` (big fields loaded), or None."""
        found = self._query({"uuid": task_id}, one=True)
        return found[0] if found else None

    def study_documents(self, study: str) -> list[dict]:
        """Every job document labelled with ``study`` (big fields loaded)."""
        labels = [{"output.labels.study": study}, {"metadata.study": study}, {"name": study}]
        return self._query({"$or": labels}, one=False)
