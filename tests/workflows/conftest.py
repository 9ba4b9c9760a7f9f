"""Shared helpers of the workflow tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def run_study(tmp_path):
    """Run a study file's text end to end in the embedded store: ``(report, store)``.

    Asserts that no job failed; the store is the test's own (settings point at ``tmp_path``).
    """

    def run(text: str, name: str = "study.yaml") -> tuple[Any, Any]:
        from perovflow.hpc.store import get_job_store
        from perovflow.workflows.runner import run_flow
        from perovflow.workflows.studies import build_flow, load_study

        path = tmp_path / name
        path.write_text(text)
        study = load_study(path)
        flow = build_flow(study)
        store = get_job_store()
        info = run_flow(flow, store=store, root_dir=tmp_path / "run", study=study.name)
        assert info["failed"] == []
        return store.get_output(flow.output.uuid, load=True), store

    return run
