"""Real pw.x + pp.x (plot_num=11) on a V_H⁺ vacancy in rocksalt LiH: the Freysoldt and
eFNV corrections against the point-charge Makov–Payne term q²α_M/(2εL).

Independent facts: α_M = 4.5848 of the fcc lattice (L its cubic constant; Leslie & Gillan,
J. Phys. C 18, 973 (1985)) and ε∞ = 3.61 of LiH (measured). The vacancy is not relaxed, so
only the electrons screen it (ε∞). 30 Ry, Γ only, GTH Li q3 / H q1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from perovflow.analysis.corrections import efnv, freysoldt
from perovflow.analysis.ewald import COULOMB_EV_A
from perovflow.analysis.formation import CellCalc, make_defect
from perovflow.engines.qe.jobs import QEStaticMaker, run_qe_task

pytestmark = [pytest.mark.qe, pytest.mark.cp2k]
EPS_LIH, ALPHA_FCC = 3.61, 4.5848
TINY = {"ecutwfc": 30, "ecutrho": 120, "kpts": [1, 1, 1], "conv_thr": 1e-7}


def lih(n: int) -> Structure:
    conv = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.02), ["Li", "H"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])  # fmt: skip
    return conv.get_primitive_structure() * (n, n, n)


def correction_pair(n: int, tmp_path: Path) -> tuple[float, float, float, dict]:
    bulk = lih(n)
    vac = bulk.copy()
    vac.remove_sites([next(i for i, s in enumerate(bulk) if s.specie.symbol == "H")])
    cells = []
    for name, cell, q in (("bulk", bulk, 0), ("vac", vac, 1)):
        maker = QEStaticMaker(protocol="fast", charge=q, defect=bool(q), write_potential=True,
                              input_set_overrides=TINY)  # fmt: skip
        (tmp_path / name).mkdir(parents=True)
        doc = run_qe_task(maker, cell, None, tmp_path / name)
        assert Path(doc.files["potential_cube"]).is_file()
        cells.append(CellCalc(doc.structure, doc.energy_eV, q, doc.potential, name))
    _, fpos = make_defect(cells[0].get_structure(), cells[1].get_structure())
    a_conv = 4.02 * n
    makov_payne = COULOMB_EV_A * ALPHA_FCC / (2 * EPS_LIH * a_conv)
    f = freysoldt(cells[0], cells[1], EPS_LIH, fpos)
    k = efnv(cells[0], cells[1], EPS_LIH, fpos)
    return f[0], k[0], makov_payne, cells[1].potential


@pytest.mark.slow
def test_freysoldt_and_efnv_of_a_16_atom_cell_match_makov_payne(tmp_path):
    fnv, kumagai, makov_payne, record = correction_pair(2, tmp_path)
    assert record["units"] == "eV" and len(record["site_potentials_eV"]) == 15
    assert 0 < fnv == pytest.approx(makov_payne, rel=0.30)
    assert kumagai == pytest.approx(fnv, abs=0.1)  # isotropic cubic host: the two agree


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_correction_shrinks_as_one_over_l(tmp_path):
    small = correction_pair(2, tmp_path / "n2")
    large = correction_pair(3, tmp_path / "n3")
    assert 0 < large[0] == pytest.approx(large[2], rel=0.30)
    assert small[0] / large[0] == pytest.approx(3 / 2, rel=0.2)
    assert large[1] == pytest.approx(large[0], abs=0.1)
    assert np.sign(small[1]) == np.sign(large[1]) == 1
