"""The migration flow's NEB job with real pw.x: a Br hop in cubic CsPbBr3 (5-atom cell).

Independent facts checked: the hop between two symmetry-equivalent Br sites has no reaction
energy (same end-point energy to 10 meV), its highest image is the middle one (the hop is
symmetric about its midpoint), the barrier is positive and below 2 eV (halide vacancy hops in
lead-halide perovskites: 0.1-0.6 eV; the 25 %-vacancy toy cell is only an upper-bound
setting), and the climbing image's DFT forces are converged to the job's fmax.
"""

from __future__ import annotations

import numpy as np
import pytest
from jobflow import run_locally

from perovflow.workflows.migration import NEBMaker


@pytest.mark.qe
@pytest.mark.slow
def test_qe_neb_job_of_a_symmetric_br_hop(tmp_path, monkeypatch):
    from perovflow.structures.paths import enumerate_hops, hop_endpoints
    from perovflow.structures.prototypes import build_prototype

    monkeypatch.chdir(tmp_path)
    host = build_prototype("CsPbBr3-cubic", cell="primitive")
    hop = min(enumerate_hops(host, "Br"), key=lambda h: h.length)
    initial, final = hop_endpoints(host, hop)
    maker = NEBMaker(code="qe", protocol="fast", nimages=3, fmax=0.1,
                     input_set_overrides={"kpts": [1, 1, 1]})  # fmt: skip
    job = maker.make(initial, final)
    out = run_locally(job, create_folders=True, ensure_success=True)[job.uuid][1].output
    summary = out["summary"]
    print("\n", {k: summary[k] for k in ("barrier_forward_eV", "expensive_calls", "cheap_calls")})
    assert summary["converged"]
    assert abs(summary["reaction_energy_eV"]) < 0.01
    assert summary["ts_image"] == 2
    assert 0.0 < summary["barrier_forward_eV"] < 2.0
    ts = np.array(out["images"][2]["forces"])
    assert np.linalg.norm(ts, axis=1).max() < 0.1
    assert out["code"] == "qe"
