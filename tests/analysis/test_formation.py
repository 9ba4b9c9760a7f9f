"""Defect formation: potential readers, Freysoldt scaling, chemical-potential limits, levels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perovflow.analysis.collect import load_cell
from perovflow.analysis.formation import (
    CellCalc,
    check_cells,
    formation_energies,
    freysoldt,
    locate_defect,
    transition_levels,
)
from perovflow.analysis.potentials import RY_EV, read_cube_potential, read_filplot
from perovflow.engines.qe.projwfc import read_text as read_gz
from perovflow.errors import InputError


def _planar(path: Path) -> dict[int, list[float]]:
    data = json.loads(read_gz(path))
    return {int(k): v for k, v in data.items()}


@pytest.fixture
def cells(qe_data: Path) -> tuple[CellCalc, CellCalc]:
    bulk = load_cell(qe_data / "cs4pbbr6", 0, _planar(qe_data / "cs4pbbr6" / "planar_eV.json.gz"))
    vac = load_cell(
        qe_data / "cs4pbbr6_vbr", 1, _planar(qe_data / "cs4pbbr6_vbr" / "planar_eV.json.gz"), "V_Br"
    )
    return bulk, vac


def test_cube_and_filplot_readers_agree(qe_data: Path):
    cube = read_cube_potential(qe_data / "cspbbr3_scf" / "pwscf.vpot.cube.gz", units="Ry")
    plot = read_filplot(qe_data / "cspbbr3_scf" / "pwscf.vpot.dat.gz")
    assert cube.data.shape == plot.data.shape == (50, 50, 50)
    assert cube.data == pytest.approx(plot.data, abs=1e-4 * RY_EV)
    assert cube.structure.lattice.abc == pytest.approx((5.87, 5.87, 5.87), abs=1e-3)
    # cubic cell: the planar averages along a and b are identical by symmetry (Br on each axis)
    pa = plot.planar_averages()
    assert pa[0] == pytest.approx(pa[1], abs=1e-3)


def test_unknown_units_and_truncated_filplot(tmp_path: Path, qe_data: Path):
    text = read_gz(qe_data / "cspbbr3_scf" / "pwscf.vpot.dat.gz")
    bad = tmp_path / "v.dat"
    bad.write_text(text[: len(text) // 3])
    with pytest.raises(InputError, match=r"not a complete pp.x filplot"):
        read_filplot(bad)
    text = read_gz(qe_data / "cspbbr3_scf" / "pwscf.vpot.cube.gz")
    auto = tmp_path / "v.cube"
    auto.write_text(text)  # pp.x writes "Cubefile created from PWScf calculation": Rydberg
    explicit = read_cube_potential(auto, units="Ry")
    assert read_cube_potential(auto).data == pytest.approx(explicit.data)
    unknown = tmp_path / "x.cube"
    unknown.write_text("some potential\n" + text.split("\n", 1)[1])
    with pytest.raises(InputError, match="energy unit"):
        read_cube_potential(unknown)


def test_vacancy_located_at_the_removed_br(cells, qe_data: Path):
    bulk, vac = cells
    kind, idx, fpos = locate_defect(bulk.get_structure(), vac.get_structure())
    site = np.loadtxt(qe_data / "cs4pbbr6_vbr" / "vacancy_site_cartesian_A.txt")
    assert kind == "vacancy" and bulk.get_structure()[idx].specie.symbol == "Br"
    assert bulk.get_structure().lattice.get_cartesian_coords(fpos) == pytest.approx(site, abs=1e-3)


def test_freysoldt_electrostatic_term_scales_with_q_squared(cells):
    bulk, vac = cells
    fpos = locate_defect(bulk.get_structure(), vac.get_structure())[2]
    _, _, one = freysoldt(bulk, vac, 4.5, fpos)
    vac.charge = 2
    _, _, two = freysoldt(bulk, vac, 4.5, fpos)
    assert two["electrostatic_eV"] == pytest.approx(4 * one["electrostatic_eV"], rel=1e-5)
    # a stronger dielectric screens more: smaller point-charge term
    _, _, screened = freysoldt(bulk, vac, 9.0, fpos)
    assert screened["electrostatic_eV"] < two["electrostatic_eV"]
    aniso = freysoldt(bulk, vac, np.diag([4.0, 4.5, 5.0]), fpos)
    assert np.isfinite(aniso[0])


def _phases(bulk: CellCalc) -> dict[str, float]:
    """Elements and competing phases for which Cs4PbBr6 is stable by 0.1 eV per formula unit.

    dH_f(CsBr) = -4.0 eV, dH_f(PbBr2) = -6.0 eV, dH_f(Cs4PbBr6) = 4(-4.0) + (-6.0) - 0.1 eV;
    the Br reference is set so that the computed host energy has exactly that enthalpy.
    """
    e_host = bulk.energy_eV / 2  # two formula units in the primitive cell
    mu = {"Cs": -1000.0, "Pb": -500.0}
    dh_host = 4 * -4.0 + -6.0 - 0.1
    mu["Br"] = (e_host - 4 * mu["Cs"] - mu["Pb"] - dh_host) / 6
    return {
        **mu,
        "CsBr": mu["Cs"] + mu["Br"] - 4.0,
        "PbBr2": mu["Pb"] + 2 * mu["Br"] - 6.0,
        "Cs4PbBr6": e_host,
        "_dh_host": dh_host,
    }


def test_formation_energy_limits_slopes_and_br_poor_is_lower(cells):
    bulk, vac = cells
    phases = _phases(bulk)
    dh_host = phases.pop("_dh_host")
    neutral = CellCalc(vac.structure, vac.energy_eV + 2.0, 0, vac.potential, "V_Br")
    res = formation_energies(
        bulk, [vac, neutral], phases, vbm_eV=2.447, band_gap_eV=3.72, dielectric=4.5
    )
    assert res.defect == "v_Br" or res.defect.lower() == "v_br"
    assert len(res.limits) >= 2
    for lim in res.limits:
        d = lim["dmu_eV"]
        # at every vertex the host is in equilibrium: 4 dmu_Cs + dmu_Pb + 6 dmu_Br = dH_f
        assert 4 * d["Cs"] + d["Pb"] + 6 * d["Br"] == pytest.approx(dh_host, abs=1e-3)
        # slopes are the charges: E_f(+1) - E_f(0) changes by +1 eV per eV of E_F
        pts = res.envelope[lim["name"]]
        assert pts[0][0] == 0.0 and pts[-1][0] == pytest.approx(3.72)
    # removing Br costs less where Br is scarce (lowest dmu_Br)
    poor = min(res.limits, key=lambda lim: lim["dmu_eV"]["Br"])
    rich = max(res.limits, key=lambda lim: lim["dmu_eV"]["Br"])
    assert poor["formation_at_vbm_eV"][0] < rich["formation_at_vbm_eV"][0]
    assert rich["formation_at_vbm_eV"][0] - poor["formation_at_vbm_eV"][0] == pytest.approx(
        rich["dmu_eV"]["Br"] - poor["dmu_eV"]["Br"], abs=1e-6
    )
    # charged entry is corrected, neutral is not
    by_q = {e["charge"]: e for e in res.entries}
    assert by_q[1]["correction_eV"] != 0.0 and by_q[0]["correction_eV"] == 0.0


def test_transition_levels_hand_computed():
    # E_f(q, E_F) = b_q + q E_F: +1 -> 1.0 + E_F, 0 -> 2.0, -1 -> 4.5 - E_F
    levels = transition_levels({1: 1.0, 0: 2.0, -1: 4.5}, gap=3.0)
    assert [(t["q1"], t["q2"]) for t in levels] == [(1, 0), (0, -1)]
    assert [t["level_eV"] for t in levels] == pytest.approx([1.0, 2.5])
    assert all(t["in_gap"] for t in levels)


def test_mismatched_cells_and_missing_dielectric(cells):
    bulk, vac = cells
    stretched = vac.get_structure().copy()
    stretched.scale_lattice(stretched.volume * 1.3)
    with pytest.raises(InputError, match="does not match the bulk supercell") as err:
        check_cells(bulk.get_structure(), stretched)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="dielectric"):
        formation_energies(bulk, [vac], {"Cs": -1.0}, 2.4, 3.7, dielectric=None)


def test_the_same_cells_give_the_same_diagram_twice(cells):
    """The libraries decorate structures in place (oxidation states): the inputs stay usable."""
    from pymatgen.core import Structure

    bulk, vac = cells
    phases = _phases(bulk)
    phases.pop("_dh_host")
    bulk = CellCalc(Structure.from_dict(bulk.get_structure().as_dict()), bulk.energy_eV, 0,
                    bulk.potential, bulk.label)  # fmt: skip
    first = formation_energies(bulk, [vac], phases, vbm_eV=2.447, band_gap_eV=3.72, dielectric=4.5)
    again = formation_energies(bulk, [vac], phases, vbm_eV=2.447, band_gap_eV=3.72, dielectric=4.5)
    assert again.transition_levels == first.transition_levels
    assert again.limits == first.limits
    assert all(s.specie.symbol in ("Cs", "Pb", "Br") for s in bulk.structure)  # undecorated
