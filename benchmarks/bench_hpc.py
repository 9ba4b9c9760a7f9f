"""HPC layer benchmark: perovflow vs plain jobflow/FireWorks calls, side by side, one run.

1. adding a 1,000-calculation study to the (embedded) LaunchPad: ``submit_flow`` (hashing,
   one bulk insert) vs ``LaunchPad.add_wf(flow_to_workflow(flow))`` (one upsert per firework);
2. ``query`` over 10,000 task documents: SQL prefilter + projection vs loading every
   document through ``JobStore.query()`` and filtering in Python;
3. ``status`` over 10,000 fireworks: one aggregation vs one FireWorks count per state;
4. per-job orchestration overhead of a local run (submit + rocket + store) over the bare call.

Targets: (1) <= 10 s, (2)(3) <= 0.5 s each, (4) <= 1 s per job. Run:
``PYTHONPATH=tests/hpc .venv/bin/python benchmarks/bench_hpc.py``
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "hpc"))

from hpc_workers import tiny_task
from jobflow import Flow


def fresh_project(tag: str) -> None:
    os.environ["PEROVFLOW_PROJECT_DIR"] = tempfile.mkdtemp(prefix=f"bench-{tag}-")
    os.environ["PEROVFLOW_SCRATCH_DIR"] = os.environ["PEROVFLOW_PROJECT_DIR"] + "/scratch"
    os.environ["PEROVFLOW_CONFIG_FILE"] = os.environ["PEROVFLOW_PROJECT_DIR"] + "/none.yaml"


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def bench_submit(n: int = 1000) -> tuple[float, float]:
    from jobflow.managers.fireworks import flow_to_workflow

    from perovflow.hpc.launchpad import get_launchpad
    from perovflow.hpc.submit import submit_flow

    fresh_project("warmup")  # imports and first-use costs are paid here, not timed
    submit_flow(Flow([tiny_task(i) for i in range(3)], name="w"))
    get_launchpad().add_wf(flow_to_workflow(Flow([tiny_task(9)])))
    fresh_project("submit")
    get_launchpad()
    ours, rep = timed(submit_flow, Flow([tiny_task(i) for i in range(n)], name="big"))
    assert rep.added == n
    fresh_project("submit-base")
    lp = get_launchpad()
    flow = Flow([tiny_task(i) for i in range(n)], name="big")
    base, _ = timed(lambda: lp.add_wf(flow_to_workflow(flow)))
    return ours, base


def task_doc(i: int) -> dict:
    formula = ("CsPbBr3", "Cs4PbBr6", "PbBr2")[i % 3]
    sites = [
        {"species": [{"element": "Cs", "occu": 1}], "abc": [0.1 * j, 0.2, 0.3]} for j in range(10)
    ]
    return {
        "uuid": f"u{i}", "index": 1, "name": "qe static", "completed_at": f"2025-01-01T{i:08d}",
        "output": {
            "formula": formula, "code": "qe", "calc_type": "static", "protocol": "standard",
            "labels": {"study": f"s{i % 10}", "n": i}, "charge": float(i % 3 - 1),
            "energy_eV": -1000.0 - i, "electronic": {"band_gap_eV": random.random() * 4},
            "structure": {"lattice": {"matrix": [[6.0, 0, 0], [0, 6.0, 0], [0, 0, 6.0]]}, "sites": sites},
            "input_parameters": {"ecutwfc": 30, "kpts": [4, 4, 4]},
            "forces_eV_per_A": [[0.01, 0.02, 0.03]] * 10,
        },
    }  # fmt: skip


def bench_query(n: int = 10000) -> tuple[float, float, int]:
    from perovflow.hpc.query import query
    from perovflow.hpc.store import get_job_store

    fresh_project("query")
    store = get_job_store()
    docs = [task_doc(i) for i in range(n)]
    for k in range(0, n, 1000):
        store.docs_store.update(docs[k : k + 1000], key=["uuid", "index"])
    ours, rows = timed(
        query, study="s3", where=["band_gap_eV>2"], fields=["formula", "band_gap_eV"]
    )

    def baseline() -> list:
        fresh = get_job_store()
        fresh.connect()
        return [
            d for d in fresh.query({})
            if d["output"]["labels"]["study"] == "s3" and d["output"]["electronic"]["band_gap_eV"] > 2
        ]  # fmt: skip

    base, rows2 = timed(baseline)
    assert len(rows) == len(rows2)
    return ours, base, len(rows)


def bench_status(n: int = 10000) -> tuple[float, float, float]:
    from perovflow.hpc import embedded
    from perovflow.hpc.launchpad import get_launchpad
    from perovflow.hpc.query import STATES, status

    fresh_project("status")
    lp = get_launchpad()
    states = [STATES[i % 7] for i in range(n)]
    docs = [
        {"fw_id": i + 1, "name": "qe static", "state": states[i],
         "spec": {**task_doc(i)["output"], "_perovflow": {"study": f"s{i % 10}", "code": "qe"}}}
        for i in range(n)
    ]  # fmt: skip
    lp.fireworks.insert_many(docs)  # firework-sized documents (~2 kB spec each)
    embedded._CLIENTS.clear()  # a new process: nothing loaded yet
    cold, out = timed(status)
    assert out["total"] == n
    warm, _ = timed(status)
    lp = get_launchpad()
    base, _ = timed(lambda: {s: lp.get_fw_ids({"state": s}, count_only=True) for s in STATES})
    return cold, warm, base


def bench_overhead(n: int = 10) -> tuple[float, float]:
    from fireworks import FWorker
    from fireworks.core.rocket_launcher import rapidfire

    from perovflow.hpc.launchpad import get_launchpad
    from perovflow.hpc.rocket import spooling_store
    from perovflow.hpc.submit import submit_flow

    bare, _ = timed(lambda: [tiny_task.original(i) for i in range(n)])
    fresh_project("overhead")
    spooling_store()
    cwd = os.getcwd()
    os.chdir(os.environ["PEROVFLOW_SCRATCH_DIR"].rsplit("/", 1)[0])

    def orchestrated() -> None:
        submit_flow(Flow([tiny_task(i) for i in range(n)], name="o"))
        rapidfire(get_launchpad(), FWorker(), strm_lvl="ERROR")

    full, _ = timed(orchestrated)
    os.chdir(cwd)
    return bare / n, (full - bare) / n


def main() -> None:
    import logging

    logging.disable(logging.INFO)
    print("perovflow hpc benchmark (embedded store, this machine)")
    ours, base = bench_submit()
    print(
        f"add 1,000-calc study   perovflow {ours:7.2f} s   plain add_wf {base:7.2f} s   (target <= 10 s)"
    )
    ours, base, n = bench_query()
    print(
        f"query 10,000 task docs perovflow {ours:7.3f} s   load+filter  {base:7.3f} s   ({n} rows; target <= 0.5 s)"
    )
    cold, warm, base = bench_status()
    print(
        f"status 10,000 fws      perovflow {cold:7.3f} s cold, {warm:.3f} s warm   count per state {base:7.3f} s   (target <= 0.5 s)"
    )
    bare, over = bench_overhead()
    print(
        f"local job overhead     bare call {bare:7.4f} s/job   orchestration +{over:.3f} s/job   (target <= 1 s)"
    )


if __name__ == "__main__":
    main()
