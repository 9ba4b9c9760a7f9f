"""Cross-code check: the PBE gap of cubic CsPbBr3 from QE and from CP2K with the same GTH cores.

Both codes sample the Γ-centred 2x2x2 grid, which contains R, where cubic CsPbBr3 has its
direct gap. The pseudopotentials are the same GTH-PBE entries (Cs q9, Pb q4, Br q7; QE reads
them converted to UPF). CP2K uses the triple-zeta TZVP-MOLOPT-SR basis of BASIS_MOLOPT_UCL:
the double-zeta DZVP-MOLOPT-SR basis of the protocols puts the gap about 0.19 eV above the
plane-wave value (measured: 1.60 vs 1.41 eV), TZVP within 0.02 eV.
"""

from __future__ import annotations

import re

import pytest
from pymatgen.core import Lattice, Structure

pytestmark = [pytest.mark.qe, pytest.mark.cp2k]


def test_cspbbr3_gap_agrees_between_qe_and_cp2k(tmp_path, monkeypatch):
    from perovflow.engines.cp2k.jobs import CP2KStaticMaker, run_cp2k_task
    from perovflow.engines.qe.jobs import QEStaticMaker, run_qe_task

    monkeypatch.setenv("PEROVFLOW_CP2K__BASIS_FILE", "BASIS_MOLOPT_UCL")
    cell = Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(5.87), ["Cs", "Pb", "Br"], [[0, 0, 0], [0.5] * 3, [0, 0.5, 0.5]]
    )
    qe_maker = QEStaticMaker(
        protocol="fast", input_set_overrides={"kpts": [2, 2, 2], "ecutwfc": 35, "ecutrho": 140}
    )
    cp2k_maker = CP2KStaticMaker(
        protocol="fast",
        input_set_overrides={
            "basis": "TZVP-MOLOPT-SR-GTH",
            "kpoints": [2, 2, 2],
            "cutoff_eV": 2000,
        },
    )
    qe = run_qe_task(qe_maker, cell, None, tmp_path / "qe")
    cp2k = run_cp2k_task(cp2k_maker, cell, None, tmp_path / "cp2k")

    def valences(doc):
        return {p.element: int(re.search(r"q(\d+)", p.name).group(1)) for p in doc.pseudopotentials}

    assert valences(qe) == valences(cp2k) == {"Cs": 9, "Pb": 4, "Br": 7}
    assert qe.electronic.is_direct and cp2k.electronic.is_direct
    gap_qe, gap_cp2k = qe.electronic.band_gap_eV, cp2k.electronic.band_gap_eV
    print(f"CsPbBr3 PBE gap at R: QE {gap_qe:.3f} eV, CP2K {gap_cp2k:.3f} eV")
    assert 1.0 < gap_qe < 2.0
    assert abs(gap_qe - gap_cp2k) < 0.15
