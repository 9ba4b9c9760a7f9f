"""Resume: rerunning a flow reuses finished jobs; changed settings rerun only what they touch."""

from __future__ import annotations

from jobflow import Flow, job

from perovflow.workflows.runner import assign_resume_keys, run_flow

CALLS: list[tuple[int, int]] = []


@job
def add(a: int, b: int) -> int:
    """A job that records that it ran."""
    CALLS.append((a, b))
    return a + b


def build(x: int) -> Flow:
    first = add(1, 2)
    second = add(first.output, x)
    return Flow([first, second], output=second.output)


def test_keys_are_stable_across_builds_and_follow_inputs():
    a, b, c = build(10), build(10), build(20)
    ka, kb, kc = (list(assign_resume_keys(f).values()) for f in (a, b, c))
    assert ka == kb  # same study built twice: same keys (uuids differ)
    assert ka[0] == kc[0] and ka[1] != kc[1]  # only the changed job's key changes


def test_rerun_skips_finished_jobs(tmp_path):
    from perovflow.hpc.store import get_job_store

    CALLS.clear()
    store = get_job_store()
    first = run_flow(build(10), store=store, root_dir=tmp_path / "a")
    assert (first["ran"], first["reused"], first["failed"]) == (2, 0, [])
    again = build(10)
    second = run_flow(again, store=store, root_dir=tmp_path / "b")
    assert (second["ran"], second["reused"]) == (0, 2)
    assert len(CALLS) == 2  # nothing recomputed
    assert store.get_output(again.output.uuid, load=True) == 13
    changed = build(20)
    third = run_flow(changed, store=store, root_dir=tmp_path / "c")
    assert (third["ran"], third["reused"]) == (1, 1)
    assert CALLS[-1] == (3, 20)
    assert store.get_output(changed.output.uuid, load=True) == 23


def test_fresh_run_recomputes(tmp_path):
    from perovflow.hpc.store import get_job_store

    CALLS.clear()
    store = get_job_store()
    run_flow(build(5), store=store, root_dir=tmp_path / "a")
    info = run_flow(build(5), store=store, root_dir=tmp_path / "b", resume=False)
    assert info["reused"] == 0 and len(CALLS) == 4


@job
def boom(x: int) -> int:
    """A job that fails."""
    raise ValueError(f"bad value {x}")


def test_failures_are_reported_with_their_reason(tmp_path):
    from perovflow.hpc.store import get_job_store

    failing = boom(1)
    child = add(failing.output, 1)
    info = run_flow(Flow([failing, child]), store=get_job_store(), root_dir=tmp_path)
    assert info["failed"] == ["boom", "add"] and info["ran"] == 0
    assert info["errors"]["boom"] == "ValueError: bad value 1"
