"""Stored task documents for the analysis layer, without analysis knowing the store.

``analysis`` reads documents and files; which results store holds the documents (the
embedded one, MongoDB) is the business of ``hpc``. The command line joins the two: it
installs a :class:`DocumentSource` (``perovflow.hpc.store.StoreDocuments``) with
:func:`use_documents`, and analysis asks :func:`task_output` / :func:`study_documents`.
A program using perovflow as a library does the same, or passes folders only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from perovflow.errors import InputError


class DocumentSource(Protocol):
    """Where stored job documents come from (jobflow's ``{uuid, name, output, ...}``)."""

    def job_document(self, task_id: str) -> dict[str, Any] | None:
        """The newest job document with uuid ``task_id`` (big fields loaded), or None."""

    def study_documents(self, study: str) -> list[dict[str, Any]]:
        """Every job document labelled with ``study`` (big fields loaded)."""


_factory: Callable[[], DocumentSource] | None = None


def use_documents(factory: Callable[[], DocumentSource] | None) -> None:
    """Install the source of stored documents (a factory, called on first use each time)."""
    global _factory
    _factory = factory


def document_source() -> DocumentSource:
    """The installed :class:`DocumentSource`; a one-line error when there is none."""
    if _factory is None:
        raise InputError(
            "a task id needs the results store, and none is connected here",
            "give a calculation folder, use the perovflow command line, or call "
            "perovflow.documents.use_documents(perovflow.hpc.store.StoreDocuments)",
        )
    return _factory()


def task_output(task_id: str) -> dict[str, Any]:
    """The output document of the stored job ``task_id`` (big fields loaded)."""
    doc = document_source().job_document(task_id)
    if doc is None:
        raise InputError(
            f"{task_id!r} is neither a file/folder nor a task id in the store",
            "give a calculation folder or a uuid listed by the store",
        )
    out = doc.get("output") or {}
    if not isinstance(out, dict):
        raise InputError(f"task {task_id} has no output document", "pick a finished task")
    out.setdefault("uuid", task_id)
    return out


def study_documents(study: str) -> list[dict[str, Any]]:
    """Every stored job document of ``study`` (none when no store is connected)."""
    return document_source().study_documents(study) if _factory is not None else []
