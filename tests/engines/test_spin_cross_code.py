"""Cross-code check of the automatic spin state: a 4-atom odd-electron cell in QE and CP2K.

Cubic CsPbBr3 with one Br removed (Cs 9 + Pb 4 + 2 Br x 7 = 27 valence electrons with the
shared GTH-PBE cores) has one unpaired electron. Each engine decides the spin state on its
own (QE: nspin=2, tot_magnetization; CP2K: UKS, MULTIPLICITY); both must end up with one
more spin-up than spin-down electron, read from each code's own output: QE's printed
"total magnetization", CP2K's alpha and beta MO occupations.
"""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

pytestmark = [pytest.mark.qe, pytest.mark.cp2k]


def test_odd_electron_cell_has_the_same_spin_state_in_qe_and_cp2k(tmp_path):
    from perovflow.engines.cp2k.jobs import CP2KStaticMaker, run_cp2k_task
    from perovflow.engines.qe.jobs import QEStaticMaker, run_qe_task

    cell = Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(5.87), ["Cs", "Pb", "Br"], [[0, 0, 0], [0.5] * 3, [0, 0.5, 0.5]]
    )
    cell.remove_sites([4])  # one of the three Br: Cs Pb Br2, 27 electrons
    qe = run_qe_task(
        QEStaticMaker(protocol="fast", input_set_overrides={"kpts": [1, 1, 1], "ecutwfc": 25}),
        cell, None, tmp_path / "qe",
    )  # fmt: skip
    cp2k = run_cp2k_task(
        CP2KStaticMaker(protocol="fast", input_set_overrides={"kpoints": "gamma"}),
        cell, None, tmp_path / "cp2k",
    )  # fmt: skip
    assert qe.electronic.nelect == cp2k.electronic.nelect == 27
    assert qe.electronic.spin_polarized and cp2k.electronic.spin_polarized
    occ = np.asarray(cp2k.occupations)  # [spin][k][MO], 0..1 per channel, as CP2K printed
    eig = np.asarray(cp2k.eigenvalues)
    m_cp2k = occ[0].sum() - occ[1].sum()
    print(f"total magnetisation: QE {qe.electronic.total_magnetization} μB, CP2K {m_cp2k} μB")
    assert qe.electronic.total_magnetization == pytest.approx(1.0, abs=0.01)
    assert m_cp2k == pytest.approx(qe.electronic.total_magnetization, abs=0.01)
    # in both codes the unpaired electron is spin up: the up HOMO lies above the down HOMO
    qe_up, qe_down = (qe.electronic.spin_edges[s]["vbm_eV"] for s in ("up", "down"))
    assert qe_up > qe_down
    assert eig[0][occ[0] > 0.5].max() > eig[1][occ[1] > 0.5].max()
