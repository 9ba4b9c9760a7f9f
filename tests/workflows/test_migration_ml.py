"""Migration study end to end with the ML potential as the engine (seed 004's four paths)."""

from __future__ import annotations

from pathlib import Path

import pytest

from perovflow.workflows.runner import run_flow
from perovflow.workflows.studies import build_flow, load_study

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.mlip
@pytest.mark.slow
def test_seed_paths_barrier_ordering_and_resume(tmp_path, cli):
    from perovflow.hpc.store import get_job_store

    study = load_study(REPO / "studies" / "cs2naagbicl6_migration_fast.yaml")
    flow = build_flow(study)
    store = get_job_store()
    info = run_flow(flow, store=store, root_dir=tmp_path / "run1", study=study.name)
    assert info["failed"] == []
    rows = store.get_output(flow.output.uuid, load=True)["rows"]
    by_moving = {}
    for row in rows:
        by_moving.setdefault(row["moving"], []).append(row["barrier_eV"])
    assert sorted(by_moving) == ["Ag", "Cl", "Na"]
    cl = by_moving["Cl"]
    cations = by_moving["Na"] + by_moving["Ag"]
    assert len(cl) == 2 and len(cations) == 2
    # seed 004 (independent DFT): Cl hops 11-14 kcal/mol, cation hops 25-30 kcal/mol
    assert max(cl) < min(cations)
    assert all(b > 0 for b in cl + cations)
    assert all(row["converged"] and row["dft_calls"] > 0 for row in rows)
    # a rerun continues from the store: nothing is recomputed, and `run` prints the table
    path = REPO / "studies" / "cs2naagbicl6_migration_fast.yaml"
    code, out, err = cli("run", path, "-w", tmp_path / "run2")
    assert code == 0, err
    print(out)
    assert "ran: 0" in out
    header, _, *body = out.splitlines()[: len(rows) + 2]
    assert header.split() == ["path", "moving", "from", "barrier_eV", "barrier_kcal_mol",
                              "dft_calls", "converged"]  # fmt: skip
    for line, row in zip(body, rows, strict=True):
        kcal = float(line.split()[-3])
        assert kcal == pytest.approx(row["barrier_eV"] * 23.0605, abs=0.01)  # printed to 0.01
    # `report` shows every NEB's energy profile (plot) with its convergence
    code, out, err = cli("report", study.name, "-o", tmp_path / "report")
    assert code == 0, err
    text = (tmp_path / "report" / "report.md").read_text()
    assert text.count("NEB") >= len(rows) and "_neb.png" in text and "converged" in text
