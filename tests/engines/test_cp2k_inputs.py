"""CP2K input sets: user overrides win, clusters vs crystals, k-points, custodian compatibility."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pymatgen.core import Lattice, Molecule, Structure

from perovflow.engines.cp2k.handlers import translate
from perovflow.engines.cp2k.inputs import cp2k_input_set, gamma_centred_kpoints
from perovflow.engines.cp2k.jobs import CP2KRelaxMaker, CP2KStaticMaker
from perovflow.engines.cp2k.writer import render
from perovflow.engines.pseudos import get_pseudos
from perovflow.engines.runner import apply_actions
from perovflow.errors import InputError
from perovflow.structures.io import to_atoms


def cspbbr3() -> Structure:
    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(5.87), ["Cs", "Pb", "Br"], [[0, 0, 0], [0.5] * 3, [0, 0.5, 0.5]]
    )


def cs4pbbr6() -> Molecule:
    d, e = 3.0, 2.5
    xyz = [(0, 0, 0), (d, 0, 0), (-d, 0, 0), (0, d, 0), (0, -d, 0), (0, 0, d), (0, 0, -d)]
    xyz += [(e, e, e), (-e, -e, e), (-e, e, -e), (e, -e, -e)]
    return Molecule(["Pb"] + ["Br"] * 6 + ["Cs"] * 4, xyz)


def build(structure, calc_type="static", protocol="fast", **overrides):
    atoms = to_atoms(structure)
    pots = get_pseudos(sorted(set(atoms.get_chemical_symbols())), "cp2k")
    return cp2k_input_set(atoms, calc_type, protocol, pots, overrides=overrides)


def test_user_settings_win_over_protocol_and_automatic_choices():
    overrides = {"cutoff_eV": 1000.0, "FORCE_EVAL": {"DFT": {"SCF": {"MAX_SCF": 7, "SMEAR": None}}}}
    before = copy.deepcopy(overrides)
    params, _, _ = build(cspbbr3(), **overrides)
    text = render(params)
    assert "CUTOFF 73.4986" in text  # 1000 eV in Ry, the protocol says 200 Ry
    assert "REL_CUTOFF 29.987" in text  # protocol value kept (408 eV)
    assert "MAX_SCF 7" in text and "MAX_SCF 100" not in text
    assert "&SMEAR" not in text  # None removes an automatic section
    assert overrides == before


def test_makers_are_not_mutated_and_registry_finds_them():
    from perovflow.engines.registry import maker_class

    maker = CP2KStaticMaker(input_set_overrides={"cutoff_eV": 1000.0})
    snapshot = copy.deepcopy(maker)
    build(cspbbr3(), **maker.input_set_overrides)
    maker.make(cspbbr3())  # creates a job, runs nothing
    assert maker == snapshot
    assert maker_class("cp2k", "scf") is CP2KStaticMaker
    assert maker_class("cp2k", "relax") is CP2KRelaxMaker


def test_unknown_setting_is_a_one_line_error():
    with pytest.raises(InputError) as err:
        build(cspbbr3(), cutof_eV=1.0)
    assert "cutof_eV" in str(err.value) and "\n" not in str(err.value)


def test_basis_and_potential_share_the_valence():
    params, _, info = build(cspbbr3())
    kinds = {
        k.split()[1]: v for k, v in params["FORCE_EVAL"]["SUBSYS"].items() if k.startswith("KIND")
    }
    for el, kind in kinds.items():
        q = kind["POTENTIAL"].rsplit("-q", 1)[1]
        # fast ships the TZVP list: cp2k-data has the short-range TZVP for Cs, Pb and Br
        assert kind["BASIS_SET"] == f"TZVP-MOLOPT-SR-GTH-q{q}", el
    # Cs 5s2 5p6 6s1, Pb 6s2 6p2, Br 4s2 4p5 -> 9 + 4 + 3 * 7 valence electrons
    assert info["nelect"] == 34 and info["multiplicity"] == 1


def test_cluster_is_non_periodic_and_centred_in_a_vacuum_box():
    mol = cs4pbbr6()
    params, placed, info = build(mol, vacuum_A=4.0)
    dft, cell = params["FORCE_EVAL"]["DFT"], params["FORCE_EVAL"]["SUBSYS"]["CELL"]
    assert dft["POISSON"] == {"PERIODIC": "NONE", "PSOLVER": "WAVELET"}
    assert cell["PERIODIC"] == "NONE" and "KPOINTS" not in dft
    extent = np.ptp(mol.cart_coords, axis=0).max()
    assert np.allclose(cell["ABC"], extent + 8.0)  # cubic: the wavelet solver needs it
    centre = (placed.positions.max(0) + placed.positions.min(0)) / 2
    assert np.allclose(centre, np.array(cell["ABC"]) / 2)
    assert np.allclose(placed.get_all_distances(), to_atoms(mol).get_all_distances())
    assert not info["periodic"] and len(dft["PRINT"]["PDOS"]["LDOS"]) == len(mol)


def test_kpoints_follow_the_protocol_and_time_reversal():
    assert len(gamma_centred_kpoints([3, 3, 3])) == 14  # (27 + 1) / 2 pairs k, -k
    assert sum(k[3] for k in gamma_centred_kpoints([4, 4, 4])) == 64
    params, _, info = build(cspbbr3())  # fast: 0.6 Å⁻¹ -> 2x2x2 for a = 5.87 Å
    kp = params["FORCE_EVAL"]["DFT"]["KPOINTS"]["KPOINT"]
    assert info["kpoints"] == [2, 2, 2] and [0.5, 0.5, 0.5, 1] in kp  # R is sampled
    assert "PDOS" not in params["FORCE_EVAL"]["DFT"]["PRINT"]  # CP2K has no k-point PDOS
    gamma, _, _ = build(cspbbr3(), kpoints="gamma")
    assert "KPOINTS" not in gamma["FORCE_EVAL"]["DFT"]
    with pytest.raises(InputError, match="OT"):
        build(cspbbr3(), scf="ot")


def test_relax_sets_geo_opt_with_the_protocol_force_threshold():
    params, _, _ = build(cspbbr3(), calc_type="relax", protocol="standard")
    geo = params["MOTION"]["GEO_OPT"]
    assert params["GLOBAL"]["RUN_TYPE"] == "GEO_OPT"
    assert geo["MAX_FORCE"] == pytest.approx(0.02 / 51.422, rel=1e-3)  # eV/Å -> Ha/bohr
    assert params["FORCE_EVAL"]["DFT"]["XC"]["VDW_POTENTIAL"]["PAIR_POTENTIAL"]["TYPE"] == "DFTD3"


def test_rendered_input_reads_back_with_pymatgen_as_custodian_does():
    from pymatgen.io.cp2k.inputs import Cp2kInput

    params, _, _ = build(cs4pbbr6(), vacuum_A=3.0)
    ci = Cp2kInput.from_str(render(params))
    assert ci.check("FORCE_EVAL/DFT/SCF/MIXING") and not ci.check("FORCE_EVAL/DFT/SCF/OT")
    assert len(ci["FORCE_EVAL"]["DFT"]["PRINT"]["PDOS"]["LDOS"]) == 11


def test_custodian_actions_apply_to_the_parameter_dict(tmp_path):
    params, _, _ = build(cspbbr3(), kpoints="gamma", scf="ot")
    set_cg = {"_set": {"FORCE_EVAL": {"DFT": {"SCF": {"OT": {"MINIMIZER": "CG"}}}}}}
    to_diag = [("_unset", {"FORCE_EVAL": {"DFT": {"SCF": "OT"}}})]
    new = apply_actions(params, [translate(set_cg)], tmp_path)
    assert new["FORCE_EVAL"]["DFT"]["SCF"]["OT"]["MINIMIZER"] == "CG"
    assert params["FORCE_EVAL"]["DFT"]["SCF"]["OT"]["MINIMIZER"] == "DIIS"
    new = apply_actions(new, [translate(to_diag)], tmp_path)
    assert "OT" not in new["FORCE_EVAL"]["DFT"]["SCF"]


def test_previous_wavefunction_is_reused_only_for_the_same_atoms(tmp_path):
    from perovflow.engines.cp2k.jobs import PREV_WFN, WFN, _previous_wfn
    from perovflow.engines.cp2k.writer import coords_text

    atoms = to_atoms(cspbbr3())
    prev = tmp_path / "prev"
    prev.mkdir()
    (prev / WFN).write_bytes(b"wfn")
    (prev / "coords.xyz").write_text(coords_text(atoms))
    (prev / "cp2k.inp").write_text("&DFT\n  MULTIPLICITY 1\n&END DFT\n")
    here = tmp_path / "here"
    here.mkdir()
    assert not _previous_wfn(str(prev), here, atoms, 2)  # other spin state
    assert not _previous_wfn(str(prev), here, to_atoms(cs4pbbr6()), 1)  # other atoms
    assert _previous_wfn(str(prev), here, atoms, 1) and (here / PREV_WFN).read_bytes() == b"wfn"
