"""Migration study end to end with the ML potential as the engine (seed 004's four paths)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
                              "dft_calls", "converged", "endpoints_relaxed"]  # fmt: skip
    for line, row in zip(body, rows, strict=True):
        kcal = float(line.split()[-4])
        assert kcal == pytest.approx(row["barrier_eV"] * 23.0605, abs=0.01)  # printed to 0.01
    # `report` shows every NEB's energy profile (plot) with its convergence
    code, out, err = cli("report", study.name, "-o", tmp_path / "report")
    assert code == 0, err
    text = (tmp_path / "report" / "report.md").read_text()
    assert text.count("NEB") >= len(rows) and "_neb.png" in text and "converged" in text


def _md_rows(text: str, header_start: str) -> list[list[str]]:
    """Cells of the Markdown table whose header row starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


@pytest.mark.mlip
def test_run_prints_barrier_table_and_report_shows_profile(tmp_path, cli):
    """`perovflow run` on a one-hop CHGNet migration study (Br hop in Cs4PbBr6, 21 atoms, 3
    images) prints the barrier table of the stored result; `perovflow report` shows the
    energy profile with the climbing image at its maximum."""
    from ase.mep import NEB

    from perovflow.analysis.neb import load_images
    from perovflow.hpc.store import get_job_store
    from perovflow.structures.paths import enumerate_hops
    from perovflow.structures.prototypes import build_prototype
    from perovflow.workflows.calculators import mlip_calculator

    host = build_prototype("Cs4PbBr6", cell="primitive")
    label = min(enumerate_hops(host, "Br"), key=lambda h: h.length).label
    study = tmp_path / "hop.yaml"
    study.write_text(
        "study: migration\nname: br-hop-ml\nprotocol: fast\ncode: mlip\nprerelax: null\n"
        "structure: {prototype: Cs4PbBr6, cell: primitive}\n"
        f"migration:\n  vacancy_element: Br\n  hops: [{json.dumps(label)}]\n"
        "  relax_bulk: false\n  neb: {nimages: 3, fmax: 0.1, method: plain}\n",
        encoding="utf-8",
    )
    code, out, err = cli("run", study, "-w", tmp_path / "run", "--quiet")
    assert code == 0, err
    header, _, row = out.splitlines()[:3]
    assert header.split() == ["path", "moving", "from", "barrier_eV", "barrier_kcal_mol",
                              "dft_calls", "converged", "endpoints_relaxed"]  # fmt: skip
    eV, kcal, calls, converged, relaxed = row.split()[-5:]
    store = get_job_store()
    store.connect()
    doc = store.query_one({"name": "path 1 neb"}, load=True)["output"]
    summary, images = doc["summary"], load_images({"images": doc["images"]})
    # the printed row is the result document's, and the kcal/mol conversion is the constant's
    assert float(eV) == pytest.approx(summary["barrier_forward_eV"], abs=5e-4)
    assert float(kcal) == pytest.approx(float(eV) * 23.0605, abs=0.01)
    assert int(calls) == summary["expensive_calls"] > 0
    # independent facts, recomputed here with a fresh CHGNet: the barrier is the highest image
    # over the initial state, the whole band meets the CI-NEB test, the end points are relaxed
    energies = [im.get_potential_energy() for im in images]
    assert float(eV) == pytest.approx(max(energies) - energies[0], abs=5e-4)
    assert 0.1 < float(eV) < 1.0  # halide-vacancy hops in lead bromides: a few tenths of an eV
    band = [im.copy() for im in images]
    for im in band:
        im.calc = mlip_calculator("chgnet")
    force = float(
        np.linalg.norm(
            NEB(
                band, climb=True, method="improvedtangent", allow_shared_calculator=True
            ).get_forces(),
            axis=1,
        ).max()
    )
    assert converged == str(force < 0.1) == "True"
    ends = [float(np.linalg.norm(band[i].get_forces(), axis=1).max()) for i in (0, -1)]
    assert relaxed == "/".join("yes" if f < 0.1 else "no" for f in ends) == "yes/yes"
    # `report`: the profile table, the climbing image at the maximum, the spline beside it
    code, _, err = cli("report", "br-hop-ml", "-o", tmp_path / "report")
    assert code == 0, err
    text = (tmp_path / "report" / "report.md").read_text()
    text = text[text.index("## path 1 neb") :]  # the NEB's section
    profile = _md_rows(text, "| image | reaction coordinate (Å) |")
    assert [int(r[0]) for r in profile] == list(range(len(images)))
    coordinate, energy = [float(r[1]) for r in profile], [float(r[2]) for r in profile]
    assert coordinate == sorted(coordinate) and coordinate[0] == 0.0
    climbing = [i for i, r in enumerate(profile) if r[3] == "climbing image"]
    assert climbing == [int(np.argmax(energy))]
    assert energy[climbing[0]] == pytest.approx(float(eV), abs=5e-4)
    spline = dict(
        r[:2] for r in _md_rows(text, "| quantity | value |") if r[0] == "spline max (eV)"
    )
    # at a converged climbing image the tangential force vanishes: the spline peaks there
    assert float(spline["spline max (eV)"]) == pytest.approx(float(eV), abs=0.02)
    assert "_neb.png" in text


def test_barrier_table_reports_an_end_point_whose_relaxation_failed():
    """Hand-made NEB outputs: path 1's final relax job did not converge, path 2's initial end
    point carries forces above fmax in the NEB; both must show "no" for that end only."""
    from perovflow.workflows.migration import barrier_table

    def neb(ends_ok):
        summary = {"barrier_forward_eV": 0.5, "barrier_backward_eV": 0.5,
                   "reaction_energy_eV": 0.0, "expensive_calls": 10, "converged": True,
                   "endpoints_converged": ends_ok}  # fmt: skip
        return {"labels": {"moving_element": "Cl"}, "summary": summary}

    out = barrier_table.original([neb([True, True]), neb([False, True])],
                                 [[True, False], [True, True]])  # fmt: skip
    assert [r["endpoints_relaxed"] for r in out["rows"]] == ["yes/no", "no/yes"]
    assert out["rows"][0]["barrier_kcal_mol"] == pytest.approx(0.5 * 23.0605, abs=0.005)
    # a flow without relax jobs: only the NEB's force check is known
    assert barrier_table.original([neb([True, None])])["rows"][0]["endpoints_relaxed"] == "yes/?"
