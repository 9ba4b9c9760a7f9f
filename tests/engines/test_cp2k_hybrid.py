"""CP2K hybrids (HSE06, PBE0) with ADMM: input pieces, precedence, one-line errors, real runs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Molecule, Structure

from perovflow.engines.cp2k.hybrid import AUX_BASIS, half_width
from perovflow.engines.cp2k.inputs import cp2k_input_set
from perovflow.engines.cp2k.jobs import CP2KStaticMaker
from perovflow.engines.cp2k.writer import coords_text, render
from perovflow.engines.pseudos import get_pseudos
from perovflow.errors import InputError
from perovflow.structures.io import to_atoms

DATA = Path("/usr/share/cp2k")


def supercell(a: float = 5.87, elements=("Cs", "Pb", "Br")) -> Structure:
    s = Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(a), list(elements), [[0, 0, 0], [0.5] * 3, [0, 0.5, 0.5]]
    )
    s.make_supercell([2, 2, 2])
    return s


def cluster() -> Molecule:
    d, e = 3.0, 2.5
    xyz = [(0, 0, 0), (d, 0, 0), (-d, 0, 0), (0, d, 0), (0, -d, 0), (0, 0, d), (0, 0, -d)]
    xyz += [(e, e, e), (-e, -e, e), (-e, e, -e), (e, -e, -e)]
    return Molecule(["Pb"] + ["Br"] * 6 + ["Cs"] * 4, xyz)


def build(structure, **overrides):
    atoms = to_atoms(structure)
    pots = get_pseudos(sorted(set(atoms.get_chemical_symbols())), "cp2k")
    overrides = {"kpoints": "gamma", **overrides}
    return cp2k_input_set(atoms, "static", "fast", pots, overrides=overrides)


def test_hse06_pieces_are_krukau_hse06_with_admm():
    params, _, info = build(supercell(), xc="hse06")
    xc = params["FORCE_EVAL"]["DFT"]["XC"]
    # HSE06 (Krukau et al. 2006): ω = 0.11 bohr⁻¹, 1/4 short-range exact exchange;
    # E_x = E_x^PBE - 1/4 E_x^PBE,SR(ω) + 1/4 E_x^HF,SR(ω), full PBE correlation
    assert xc["HF"]["FRACTION"] == 0.25
    assert xc["HF"]["INTERACTION_POTENTIAL"] == {"POTENTIAL_TYPE": "SHORTRANGE", "OMEGA": 0.11}
    assert xc["XC_FUNCTIONAL"]["XWPBE"] == {"SCALE_X": -0.25, "SCALE_X0": 1.0, "OMEGA": 0.11}
    assert xc["XC_FUNCTIONAL"]["PBE"] == {"SCALE_X": 0.0, "SCALE_C": 1.0}
    text = render(params)
    assert "EPS_SCHWARZ 1e-06" in text and "MAX_MEMORY 2000" in text
    assert "&AUXILIARY_DENSITY_MATRIX_METHOD" in text
    assert "BASIS_SET AUX_FIT cFIT6" in text and "BASIS_SET AUX_FIT cFIT7" in text
    assert f"BASIS_SET_FILE_NAME {DATA}/BASIS_ADMM_MOLOPT" in text
    assert info["hybrid"]["aux_basis"] == {"Br": "cFIT6", "Cs": "cFIT7", "Pb": "cFIT6"}


def test_every_auxiliary_basis_is_in_its_cp2k_data_file():
    # read cp2k-data directly: "<El> <name>" header lines
    for el, (file, name) in AUX_BASIS.items():
        text = (DATA / file).read_text(errors="replace")
        assert re.search(rf"^\s*{el}\s+{re.escape(name)}\s*$", text, re.M), (el, file, name)
    # Na: the q9 GTH potential (2s2p3s in valence) gets the q9 UZH auxiliary basis
    assert get_pseudos(["Na"], "cp2k")["Na"].valence == 9
    assert AUX_BASIS["Na"][1].endswith("-q9")


def test_pbe0_truncation_radius_below_half_the_cell():
    # 2x2x2 cubic 5.87 Å: faces 11.74 Å apart, minimum-image radius 5.87 Å; default
    # radius min(6, 5.87 - 0.5) = 5.37 Å
    params, _, _ = build(supercell(), xc="pbe0")
    xc = params["FORCE_EVAL"]["DFT"]["XC"]
    pot = xc["HF"]["INTERACTION_POTENTIAL"]
    assert pot["POTENTIAL_TYPE"] == "TRUNCATED" and pot["CUTOFF_RADIUS"] == pytest.approx(5.37)
    assert pot["T_C_G_DATA"] == f"{DATA}/t_c_g.dat"
    assert xc["XC_FUNCTIONAL"]["PBE_HOLE_T_C_LR"] == {"CUTOFF_RADIUS": 5.37, "SCALE_X": 0.25}
    assert xc["XC_FUNCTIONAL"]["PBE"]["SCALE_X"] == 0.75
    with pytest.raises(InputError, match="below half the cell width") as err:
        build(supercell(), xc="pbe0", hf_cutoff_radius_A=6.0)
    assert "\n" not in str(err.value)
    # hexagonal a = 10 Å, c = 30 Å: the narrowest width is a sin 60° = 8.660 Å
    assert half_width(Lattice.hexagonal(10, 30).matrix) == pytest.approx(4.330, abs=1e-3)


def test_cluster_hybrids_use_the_wavelet_solver_and_untruncated_pbe0():
    params, _, _ = build(cluster(), xc="pbe0")
    dft = params["FORCE_EVAL"]["DFT"]
    assert dft["POISSON"] == {"PERIODIC": "NONE", "PSOLVER": "WAVELET"}
    assert dft["XC"]["HF"]["INTERACTION_POTENTIAL"] == {"POTENTIAL_TYPE": "COULOMB"}
    hse, _, _ = build(cluster(), xc="hse06")
    assert hse["FORCE_EVAL"]["DFT"]["XC"]["HF"]["INTERACTION_POTENTIAL"]["OMEGA"] == 0.11


def test_user_settings_win_over_maker_field_protocol_and_table(monkeypatch):
    params, _, info = build(
        supercell(),
        xc="hse06",
        eps_schwarz=1e-7,
        aux_basis={"Pb": "cFIT9"},
        FORCE_EVAL={"DFT": {"XC": {"HF": {"MEMORY": {"MAX_MEMORY": 500}}}}},
    )
    text = render(params)
    assert "EPS_SCHWARZ 1e-07" in text and "MAX_MEMORY 500" in text
    assert info["hybrid"]["aux_basis"]["Pb"] == "cFIT9"
    # density mixing does not mix exact exchange: hybrids default to OT, a user's scf wins
    assert "OT" in params["FORCE_EVAL"]["DFT"]["SCF"]
    diag, _, _ = build(supercell(), xc="hse06", scf="diag")
    assert "OT" not in diag["FORCE_EVAL"]["DFT"]["SCF"]
    assert "OT" not in build(supercell())[0]["FORCE_EVAL"]["DFT"]["SCF"]  # PBE: diag
    plain, _, _ = build(supercell(), xc="hse06", admm=False)
    assert "AUXILIARY_DENSITY_MATRIX_METHOD" not in render(plain)
    # the maker's xc beats the protocol's pbe; an xc in input_set_overrides beats the maker's
    import perovflow.engines.cp2k.inputs as inputs
    from perovflow.engines.cp2k.jobs import run_cp2k_task

    seen: list[str] = []

    def capture(*args, **kw):
        seen.append(kw["overrides"].get("xc"))
        raise InputError("stop", "test")

    monkeypatch.setattr(inputs, "cp2k_input_set", capture)
    for maker in (
        CP2KStaticMaker(xc="hse06"),
        CP2KStaticMaker(xc="hse06", input_set_overrides={"xc": "pbe0"}),
        CP2KStaticMaker(),
    ):
        with pytest.raises(InputError, match="stop"):
            run_cp2k_task(maker, supercell(), None, Path("unused"))
    assert seen == ["hse06", "pbe0", None]  # None: the protocol's xc (pbe) applies


@pytest.mark.parametrize(
    ("structure", "overrides", "message"),
    [
        (supercell(elements=("Rb", "Pb", "Br")), {}, "no ADMM auxiliary basis for Rb"),
        (supercell(), {"kpoints": [2, 2, 2]}, "at Γ only"),
        (supercell(), {"aux_basis": {"Pb": "nope"}}, "'nope' for Pb"),
        (supercell(), {"xc": "b3lyp"}, "not set up for CP2K"),
    ],
)
def test_impossible_hybrid_settings_are_one_line_errors(structure, overrides, message):
    with pytest.raises(InputError, match=message) as err:
        build(structure, **{"xc": "hse06", **overrides})
    assert "\n" not in str(err.value) and err.value.fix


@pytest.mark.cp2k
@pytest.mark.parametrize("xc", ["hse06", "pbe0"])
def test_cp2k_parses_the_hybrid_inputs(xc, tmp_path):
    for name, structure in (("crystal", supercell()), ("cluster", cluster())):
        params, placed, _ = build(structure, xc=xc)
        folder = tmp_path / name
        folder.mkdir()
        text = render(params)
        (folder / "cp2k.inp").write_text(text)
        (folder / "coords.xyz").write_text(coords_text(placed))
        # `--check` does not open files: CP2K reads one file per BASIS_SET_FILE_NAME line
        files = [ln.split()[1:] for ln in text.splitlines() if "BASIS_SET_FILE_NAME" in ln]
        assert files and all(len(f) == 1 and Path(f[0]).is_file() for f in files), files
        run = subprocess.run(
            [shutil.which("cp2k.psmp") or "cp2k.psmp", "--check", "-i", "cp2k.inp"],
            cwd=folder, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert "the input could be parsed correctly" in run.stdout, run.stdout[-800:]


def _gap(doc) -> float:
    return float(doc.electronic.band_gap_eV)


@pytest.mark.cp2k
@pytest.mark.slow
@pytest.mark.timeout(7200)  # 40-atom hybrid: ~15 min PBE + the HSE06 SCF on 2 shared cores
def test_hse06_admm_opens_the_cspbbr3_gap(tmp_path):
    # 2x2x2 cubic CsPbBr3 (40 atoms) at Γ: R folds onto Γ, so the Γ gap is the R-point gap.
    # HSE06 opens the PBE gap by ~0.5-0.9 eV in plane-wave studies of CsPbBr3 (no SOC);
    # the issue's window is 0.3-1.0 eV. The hybrid starts from the PBE wavefunction.
    from perovflow.engines.cp2k.jobs import run_cp2k_task

    # OT for both (the hybrids' default; the LUMOs come from the PDOS pass, NLUMO 8)
    # the double-zeta primary basis of the README's measurement (fast now ships TZVP): the
    # hybrid's opening of the gap is tested, and the 40-atom ADMM run stays as cheap as it was.
    # EPS_SCF 1e-5 Ha instead of fast's 3.7e-6: 50 + 8 SCF steps instead of 71 + 9, and both
    # gaps as at 3.7e-6 to 1 meV (measured: PBE 1.591, HSE06 2.397 eV)
    low = {"cutoff_eV": 1400.0, "rel_cutoff_eV": 300.0, "kpoints": "gamma", "scf": "ot",
           "n_unoccupied": 8, "basis": "DZVP-MOLOPT-SR-GTH", "eps_scf": 1e-5}  # fmt: skip
    pbe = run_cp2k_task(
        CP2KStaticMaker(protocol="fast", input_set_overrides=low), supercell(), None, tmp_path / "p"
    )
    hse = run_cp2k_task(
        CP2KStaticMaker(protocol="fast", xc="hse06", input_set_overrides={**low, "eps_schwarz": 1e-5}),
        supercell(), str(tmp_path / "p"), tmp_path / "h",
    )  # fmt: skip
    text = (tmp_path / "h" / "cp2k.inp").read_text()
    assert "&OT" in text and "&XWPBE" in text
    assert "SCF_GUESS RESTART" in text and "SCREEN_ON_INITIAL_P T" in text
    assert 1.0 < _gap(pbe) < 2.5
    assert 0.3 < _gap(hse) - _gap(pbe) < 1.0, (_gap(pbe), _gap(hse))
    assert np.isfinite(hse.energy_eV)


def test_restart_from_pbe_screens_on_the_initial_density_unless_the_user_says():
    from perovflow.engines.cp2k.hybrid import screen_on_restart

    params, _, _ = build(supercell(), xc="hse06")
    assert params["FORCE_EVAL"]["DFT"]["XC"]["HF"]["SCREENING"]["SCREEN_ON_INITIAL_P"] is False
    screen_on_restart(params, {})
    assert params["FORCE_EVAL"]["DFT"]["XC"]["HF"]["SCREENING"]["SCREEN_ON_INITIAL_P"] is True
    user = {"FORCE_EVAL": {"DFT": {"XC": {"HF": {"SCREENING": {"SCREEN_ON_INITIAL_P": False}}}}}}
    mine, _, _ = build(supercell(), xc="hse06", **user)
    screen_on_restart(mine, user)
    assert mine["FORCE_EVAL"]["DFT"]["XC"]["HF"]["SCREENING"]["SCREEN_ON_INITIAL_P"] is False
    pbe, _, _ = build(supercell())
    screen_on_restart(pbe, {})
    assert "HF" not in pbe["FORCE_EVAL"]["DFT"]["XC"]
