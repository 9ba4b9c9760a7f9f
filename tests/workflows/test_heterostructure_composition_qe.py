"""Heterostructure and composition studies end to end with pw.x on small cells."""

from __future__ import annotations

import pytest

from perovflow.workflows.runner import run_flow
from perovflow.workflows.studies import build_flow, load_study

HETERO = """
study: heterostructure
name: br-i-rp
protocol: fast
code: qe
prerelax: null
relax: false
settings:
  static: {kpts: [2, 2, 1]}
  dos: {kpts: [2, 2, 1]}
heterostructure:
  builder: file
"""

COMPOSITION = """
study: composition
name: fasnx3
protocol: fast
code: qe
prerelax: mlip
relax: false
structure: {prototype: FASnI3}
settings:
  static: {kpts: [2, 2, 2]}
  dos: {kpts: [2, 2, 2]}
composition: {host: I, guest: Br, z: [0, 3]}
"""


def _run(tmp_path, text, structure=None, engine_makers=None):
    from perovflow.hpc.store import get_job_store
    from perovflow.workflows import heterostructure
    from perovflow.workflows.studies import makers

    path = tmp_path / "study.yaml"
    path.write_text(text)
    study = load_study(path)
    if structure is None:
        flow = build_flow(study, engine_makers)
    else:  # an in-memory structure with its domain labels
        flow = heterostructure.flow_from_study(study, makers(study), structure)
    store = get_job_store()
    info = run_flow(flow, store=store, root_dir=tmp_path / "run", study=study.name)
    assert info["failed"] == []
    return store.get_output(flow.output.uuid, load=True)


@pytest.mark.qe
@pytest.mark.slow
def test_heterostructure_alignment_is_reported(tmp_path):
    from perovflow.structures.faults import rp_fault

    report = _run(tmp_path, HETERO, rp_fault("CsPbBr3-cubic", "CsPbI3-cubic", 1, 1))
    assert report["alignment"] in ("type I", "type II", "quasi-type II")
    assert set(report["edges"]) == {"CsPbBr3", "CsPbI3"}
    # independent fact: the iodide has the smaller gap, so its VBM lies above the bromide's
    edges = report["edges"]
    assert edges["CsPbI3"]["vbm_eV"] > edges["CsPbBr3"]["vbm_eV"]


@pytest.mark.qe
@pytest.mark.mlip
@pytest.mark.slow
def test_bromide_has_the_wider_gap(tmp_path):
    from perovflow.engines.qe.jobs import QEBandsMaker

    # a sparse path (3 k-points per Å⁻¹: 28 instead of fast's 64 per composition): both gaps
    # are direct at R (½,½,½), a vertex of the path, so the density does not change them
    bands = QEBandsMaker(protocol="fast", line_density=3)
    rows = _run(tmp_path, COMPOSITION, engine_makers={"bands": bands})["rows"]
    gaps = {row["z"]: row.get("gap_eV") or row.get("scf_gap_eV") for row in rows}
    assert set(gaps) == {0, 3}
    assert gaps[3] > gaps[0] > 0  # FASnBr3 is wider-gap than FASnI3 (exp. ~2.4 vs ~1.4 eV)
