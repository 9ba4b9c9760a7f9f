"""CP2K's V_HARTREE cube for the charged-defect corrections: asked for only when wanted, the
user's own print section wins, and (real cp2k) the Freysoldt correction of V_H⁺ in LiH from
it matches the point-charge Makov–Payne term (α_M = 4.5848 of the fcc lattice, measured
ε∞ = 3.61 of LiH) within 30 %, as the QE pp.x route does."""

from __future__ import annotations

from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from perovflow.engines.cp2k.potential import add_hartree_cube
from perovflow.engines.registry import get_maker

EPS_LIH, ALPHA_FCC = 3.61, 4.5848
DZVP = {"basis": "DZVP-MOLOPT-SR-GTH"}  # fast's former basis, the README's numbers


def _params() -> dict:
    return {"FORCE_EVAL": {"DFT": {"PRINT": {"MO": {}}}}}


def test_hartree_cube_is_added_on_the_full_grid_and_a_user_section_wins():
    params = _params()
    add_hartree_cube(params)
    assert params["FORCE_EVAL"]["DFT"]["PRINT"]["V_HARTREE_CUBE"]["STRIDE"] == "1 1 1"
    user = _params()
    user["FORCE_EVAL"]["DFT"]["PRINT"]["v_hartree_cube"] = {"STRIDE": "2 2 2"}
    add_hartree_cube(user)
    assert user["FORCE_EVAL"]["DFT"]["PRINT"] == {"MO": {}, "v_hartree_cube": {"STRIDE": "2 2 2"}}
    assert get_maker("cp2k", "static").write_potential is False


def test_missing_cube_is_a_one_line_engine_error(tmp_path: Path):
    from perovflow.engines.cp2k.potential import read_hartree_cube
    from perovflow.errors import EngineError

    with pytest.raises(EngineError, match="no V_HARTREE cube") as err:
        read_hartree_cube(tmp_path, {})
    assert "\n" not in str(err.value) and "V_HARTREE_CUBE" in err.value.fix


@pytest.mark.cp2k
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_freysoldt_from_the_cp2k_hartree_cube_matches_makov_payne(tmp_path: Path):
    from perovflow.analysis.corrections import efnv, freysoldt
    from perovflow.analysis.ewald import COULOMB_EV_A
    from perovflow.analysis.formation import CellCalc, make_defect
    from perovflow.engines.cp2k.jobs import run_cp2k_task

    conv = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.02), ["Li", "H"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])  # fmt: skip
    bulk = conv.get_primitive_structure() * (2, 2, 2)
    vac = bulk.copy()
    vac.remove_sites([next(i for i, s in enumerate(bulk) if s.specie.symbol == "H")])
    cells = []
    for name, cell, q in (("bulk", bulk, 0), ("vac", vac, 1)):
        # the electrostatics, not the gap, is tested: the cheaper double-zeta basis (as measured)
        maker = get_maker("cp2k", "static", protocol="fast", charge=q, defect=bool(q),
                          write_potential=True, input_set_overrides=DZVP)  # fmt: skip
        doc = run_cp2k_task(maker, cell, None, tmp_path / name)
        assert Path(doc.files["potential_cube"]).name.startswith("cp2k-v_hartree")
        cells.append(CellCalc(doc.structure, doc.energy_eV, q, doc.potential, name))
    _, fpos = make_defect(cells[0].get_structure(), cells[1].get_structure())
    makov_payne = COULOMB_EV_A * ALPHA_FCC / (2 * EPS_LIH * 4.02 * 2)
    fnv = freysoldt(cells[0], cells[1], EPS_LIH, fpos)[0]
    assert 0 < fnv == pytest.approx(makov_payne, rel=0.30)
    assert efnv(cells[0], cells[1], EPS_LIH, fpos)[0] == pytest.approx(fnv, abs=0.1)
