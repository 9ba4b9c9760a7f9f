"""Cross-code check: the PBE gap of cubic CsPbBr3 from QE and from CP2K with the same GTH cores,
each code at its ``standard`` protocol's own cutoff and basis.

Both codes sample the Γ-centred 2x2x2 grid, which contains R, where cubic CsPbBr3 has its
direct gap (the protocol's 0.25 Å⁻¹ would give 5x5x5, which misses R). The pseudopotentials
are the same GTH-PBE entries (Cs q9, Pb q4, Br q7; QE reads them converted to UPF). QE runs
80/320 Ry, CP2K 400/100 Ry with the triple-zeta TZVP-MOLOPT-SR basis (BASIS_MOLOPT_UCL),
both the ``standard`` defaults: the double-zeta DZVP-MOLOPT-SR basis puts the gap about
0.2 eV above the plane-wave value, TZVP within 0.1 eV (README, Protocols: the measurement
behind those defaults). The plane-wave gap is the independent reference here.
"""

from __future__ import annotations

import re

import pytest
from pymatgen.core import Lattice, Structure

pytestmark = [pytest.mark.qe, pytest.mark.cp2k, pytest.mark.slow]


@pytest.mark.timeout(2400)
def test_cspbbr3_gap_agrees_between_qe_and_cp2k_at_standard(tmp_path):
    from perovflow.engines.cp2k.jobs import CP2KStaticMaker, run_cp2k_task
    from perovflow.engines.qe.jobs import QEStaticMaker, run_qe_task

    cell = Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(5.87), ["Cs", "Pb", "Br"], [[0, 0, 0], [0.5] * 3, [0, 0.5, 0.5]]
    )
    qe_maker = QEStaticMaker(protocol="standard", input_set_overrides={"kpts": [2, 2, 2]})
    cp2k_maker = CP2KStaticMaker(protocol="standard", input_set_overrides={"kpoints": [2, 2, 2]})
    qe = run_qe_task(qe_maker, cell, None, tmp_path / "qe")
    cp2k = run_cp2k_task(cp2k_maker, cell, None, tmp_path / "cp2k")

    def valences(doc):
        return {p.element: int(re.search(r"q(\d+)", p.name).group(1)) for p in doc.pseudopotentials}

    assert valences(qe) == valences(cp2k) == {"Cs": 9, "Pb": 4, "Br": 7}
    assert qe.input_parameters["input_data"]["system"]["ecutwfc"] == pytest.approx(80.0, abs=0.01)
    assert qe.electronic.is_direct and cp2k.electronic.is_direct
    gap_qe, gap_cp2k = qe.electronic.band_gap_eV, cp2k.electronic.band_gap_eV
    print(f"CsPbBr3 PBE gap at R: QE {gap_qe:.3f} eV, CP2K {gap_cp2k:.3f} eV")
    assert 1.0 < gap_qe < 2.0
    assert abs(gap_qe - gap_cp2k) < 0.1
