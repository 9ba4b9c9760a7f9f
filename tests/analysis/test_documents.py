"""Analysis reads stored documents through the core's DocumentSource, never the store."""

from __future__ import annotations

import pytest

from perovflow import documents
from perovflow.analysis.sources import load_bands_source, load_task_output
from perovflow.errors import InputError


class _Docs:
    """A DocumentSource over a list of job documents (what a JobStore query returns)."""

    def __init__(self, docs):
        self.docs = docs

    def job_document(self, task_id):
        hits = [d for d in self.docs if d["uuid"] == task_id]
        return max(hits, key=lambda d: d["index"]) if hits else None

    def study_documents(self, study):
        return [d for d in self.docs if d["output"].get("labels", {}).get("study") == study]


@pytest.fixture
def source():
    previous = documents._factory
    docs = [
        {"uuid": "a1", "index": 1, "output": {"bandstructure": {"old": True}}},
        {"uuid": "a1", "index": 2, "output": {"bandstructure": {"kpoints": []}}},
    ]
    documents.use_documents(lambda: _Docs(docs))
    yield docs
    documents.use_documents(previous)


def test_task_ids_resolve_through_the_installed_source(source):
    # the newest run of a job (highest index) is the one analysed
    assert load_bands_source("a1") == {"kpoints": []}
    assert load_task_output("a1")["uuid"] == "a1"
    with pytest.raises(InputError, match="neither a file/folder nor a task id"):
        load_task_output("nope")


def test_without_a_store_a_task_id_is_a_one_line_error():
    previous = documents._factory
    documents.use_documents(None)
    try:
        with pytest.raises(InputError) as err:
            load_task_output("a1")
        assert "\n" not in err.value.one_line()
        assert documents.study_documents("demo") == []
    finally:
        documents.use_documents(previous)


def test_the_command_line_installs_the_results_store():
    import perovflow.cli  # noqa: F401  (installs the store's documents on import)
    from perovflow.hpc.store import StoreDocuments

    assert isinstance(documents.document_source(), StoreDocuments)
