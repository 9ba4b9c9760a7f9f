"""CCD of V_Br (q=+1 <-> q=0) end to end with real pw.x at `fast` on a 9-atom stand-in cell.

The stand-in is cubic CsPbBr3 doubled along x with one Br removed (Cs2Pb2Br5): the smallest
cell in which the two Pb next to the vacancy can move (in the 4-atom cell every atom sits on
an inversion centre and nothing relaxes). atomate2's own jobs run perovflow's QE statics.
"""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from perovflow.engines.qe.jobs import QERelaxMaker, QEStaticMaker
from perovflow.workflows.ccd import CCDMaker

GAMMA = {"kpts": "gamma"}  # Γ only, with pw.x's Γ tricks (real wavefunctions)
#: the Pb pair next to the vacancy moves along a soft mode: stop BFGS at 0.01 Ry/Bohr and
#: 1 mRy between steps
LOOSE = {**GAMMA, "control": {"forc_conv_thr": 0.01, "etot_conv_thr": 1e-3}}


def _vbr_cell() -> Structure:
    cell = Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(5.87), ["Cs", "Pb", "Br"], [[0, 0, 0], [0.5] * 3, [0, 0.5, 0.5]]
    )
    cell.make_supercell([2, 1, 1])
    index = next(i for i, s in enumerate(cell) if s.specie.symbol == "Br"
                 and np.allclose(s.frac_coords, [0.0, 0.5, 0.5]))  # fmt: skip
    cell.remove_sites([index])
    # start near the relaxed geometry (the Pb pair 0.05 Å away from the vacancy, their
    # equatorial Br 0.06 Å towards it: where q=+1 ends), so that BFGS needs few steps
    for i, site in enumerate(cell):
        x = site.coords[0]
        if site.specie.symbol == "Pb":
            cell.translate_sites([i], [0.05 if x < 5.87 else -0.05, 0, 0], frac_coords=False)
        elif site.specie.symbol == "Br" and not np.isclose(x, 5.87):
            cell.translate_sites([i], [-0.06 if x < 5.87 else 0.06, 0, 0], frac_coords=False)
    return cell


@pytest.mark.qe
@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_vbr_ccd_physical_checks(tmp_path):
    from perovflow.hpc.store import get_job_store
    from perovflow.workflows.runner import run_flow

    maker = CCDMaker(
        relax_maker=QERelaxMaker(protocol="fast", input_set_overrides=LOOSE),
        static_maker=QEStaticMaker(protocol="fast", input_set_overrides=GAMMA),
        distortions=(0.0, 0.2, 1.0),  # 0.2: the ħΩ fit; 1: the vertical transitions
    )
    flow = maker.make(_vbr_cell(), 1, 0)
    store = get_job_store()
    info = run_flow(flow, store=store, root_dir=tmp_path / "run", study="ccd-test")
    assert info["failed"] == []
    out = store.get_output(flow.output["ccd"].uuid, load=True)
    print({k: v for k, v in out.items() if k != "curves"})
    assert out["delta_Q_amu05_A"] > 0
    assert out["emission_eV"] < out["absorption_eV"]
    assert out["stokes_shift_eV"] > 0
    for curve in out["curves"]:
        assert curve["curvature_eV_per_amu_A2"] > 0  # both parabolas open upwards
        assert curve["d_FC_eV"] > 0  # each minimum is lower than the other state's geometry
    # Stokes shift = sum of the two Franck–Condon shifts (independent: from the raw points)
    e = {
        c["charge"]: dict(zip(c["distortions"], c["energy_eV"], strict=True)) for c in out["curves"]
    }
    assert out["stokes_shift_eV"] == pytest.approx(
        (e[1][1.0] - e[1][0.0]) + (e[0][1.0] - e[0][0.0]), abs=1e-9
    )
    doc = store.get_output(flow.output["document"].uuid, load=True)  # atomate2's CCDDocument
    assert len(doc["energies1"]) == len(doc["energies2"]) == 3
    assert (tmp_path / "run").exists()
    assert out["figure"].endswith("ccd.png")


def test_ccd_study_file_builds_one_relax_per_charge_with_the_user_settings():
    from pathlib import Path

    from perovflow.structures.prototypes import build_prototype
    from perovflow.workflows.studies import build_flow, load_study

    path = Path(__file__).resolve().parents[2] / "studies" / "cs4pbbr6_vbr_ccd_fast.yaml"
    flow = build_flow(load_study(path))
    relaxes = {}
    for job_, _ in flow.iterflow():
        maker = getattr(job_.function, "__self__", None)
        if job_.name.endswith(" relax") and isinstance(maker, QERelaxMaker):
            relaxes[maker.charge] = (maker, job_.function_args[0])
    assert sorted(relaxes) == [0, 1]
    host = build_prototype("Cs4PbBr6", cell="primitive")
    for maker, _ in relaxes.values():
        assert maker.defect and maker.input_set_overrides["kpts"] == "gamma"  # the user's k
    pre = next(j for j, _ in flow.iterflow() if j.name == "ccd ml-prerelax")
    assert len(pre.function_args[0]) == len(host) - 1  # one Br removed from the 22-atom cell
