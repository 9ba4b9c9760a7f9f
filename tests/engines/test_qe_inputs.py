"""QE input sets, precedence of user settings, launch command and maker registry (no pw.x)."""

from __future__ import annotations

import copy

import pytest
from ase import Atoms

from perovflow.engines.pseudos import Pseudo
from perovflow.engines.qe.inputs import RY_EV, nest_overrides, qe_input_set
from perovflow.engines.qe.run import band_edges, choose_npool, mpi_ranks, occupations, pw_argv
from perovflow.engines.registry import get_maker
from perovflow.errors import InputError


def cspbbr3(a: float = 5.87) -> Atoms:
    return Atoms(
        "CsPbBr3",
        scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        cell=[a, a, a],
        pbc=True,
    )


PSEUDOS = {
    el: Pseudo(el, f"{el}.upf", f"/x/{el}.upf", "0" * 32, "gth-pbe", q)  # type: ignore[arg-type]
    for el, q in (("Cs", 9), ("Pb", 4), ("Br", 7), ("Na", 9))
}


def test_protocol_values_are_converted_to_pw_units():
    p = qe_input_set(cspbbr3(), "static", "standard", PSEUDOS)
    system = p["input_data"]["system"]
    assert system["ecutwfc"] == pytest.approx(1088.46 / RY_EV)  # 80 Ry
    assert system["vdw_corr"] == "dft-d3"  # standard protocol: PBE-D3
    assert system["occupations"] == "fixed"  # 9 + 4 + 21 = 34 electrons, closed shell
    assert p["_nelect"] == 34
    assert system["nbnd"] > 17  # empty bands so that a gap can be measured
    # 2π/5.87 Å = 1.07 Å⁻¹ over 0.2 Å⁻¹ spacing = 5.35 -> 6 points per direction
    assert p["kpts"] == [6, 6, 6]
    assert p["input_data"]["control"]["calculation"] == "scf"


def test_defect_odd_electrons_and_charge_switch_on_smearing():
    atoms = cspbbr3()
    del atoms[4]  # Br vacancy: 27 electrons
    p = qe_input_set(atoms, "relax", "fast", PSEUDOS, defect=True)
    assert p["input_data"]["system"]["occupations"] == "smearing"
    assert p["input_data"]["ions"]["ion_dynamics"] == "bfgs"
    charged = qe_input_set(atoms, "static", "fast", PSEUDOS, charge=1.0)
    assert charged["_nelect"] == 26 and charged["input_data"]["system"]["tot_charge"] == 1.0
    assert charged["input_data"]["system"]["occupations"] == "fixed"  # even again


def test_user_overrides_win_over_protocol_and_automatic_logic():
    atoms = cspbbr3()
    del atoms[4]
    user = {
        "system.ecutwfc": 22,  # protocol value
        "occupations": "fixed",  # automatic smearing for a defect
        "nbnd": 40,  # automatic band count
        "kpts": [1, 1, 1],  # automatic grid from kspacing
        "electrons": {"mixing_beta": 0.1},
        "system.tot_charge": 1.0,
    }
    before = copy.deepcopy(user)
    p = qe_input_set(atoms, "static", "standard", PSEUDOS, defect=True, overrides=user)
    system = p["input_data"]["system"]
    assert (system["ecutwfc"], system["occupations"], system["nbnd"]) == (22, "fixed", 40)
    assert p["kpts"] == [1, 1, 1] and p["input_data"]["electrons"]["mixing_beta"] == 0.1
    assert user == before  # overrides are not modified
    assert qe_input_set(atoms, "static", "fast", PSEUDOS, overrides={"kspacing": 2.0})["kpts"] == [
        1,
        1,
        1,
    ]


def test_unknown_keys_are_one_line_errors():
    with pytest.raises(InputError, match=r"unknown pw\.x keyword 'ecutwfcc'"):
        nest_overrides({"ecutwfcc": 20})
    with pytest.raises(InputError, match="namelist 'sytem'"):
        nest_overrides({"sytem.ecutwfc": 20})


def test_launch_command_comes_from_settings_and_pools_follow_kpoints(monkeypatch):
    atoms = cspbbr3()
    monkeypatch.setenv("PEROVFLOW_PARALLEL__MPI_PREFIX", "")  # the user asks for a bare binary
    assert pw_argv(atoms, [2, 2, 2]) == ["pw.x"]
    monkeypatch.setenv("PEROVFLOW_QE__PARALLEL", '{"mpi_prefix": "mpirun -np 2"}')
    assert pw_argv(atoms, [2, 2, 2]) == ["mpirun", "-np", "2", "pw.x", "-nk", "2"]
    assert pw_argv(atoms, None) == ["mpirun", "-np", "2", "pw.x"]  # one k-point: no pools
    monkeypatch.setenv("PEROVFLOW_QE__NPOOL", "1")
    assert pw_argv(atoms, [2, 2, 2]) == ["mpirun", "-np", "2", "pw.x"]  # the setting wins
    assert mpi_ranks(["srun", "--ntasks=8"]) == 8
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert mpi_ranks(["srun", "pw.x"]) == 4  # srun without a count starts the allocation's tasks
    assert choose_npool(8, 3) == 2 and choose_npool(6, 10) == 6


def test_band_edges_find_direct_gap():
    eig = [[[0.0, 1.0, 3.0], [0.5, 1.5, 2.5]]]  # [spin][k][band], 2 occupied bands (4 e-)
    edges = band_edges(eig, occupations(eig, 4))
    assert edges["vbm_eV"] == 1.5 and edges["cbm_eV"] == 2.5 and edges["is_direct"]
    assert band_edges(eig, occupations(eig, 4.0, 2.0))["band_gap_eV"] == pytest.approx(1.0)


def test_odd_electron_count_is_spin_polarised_with_one_unpaired_electron():
    atoms = cspbbr3()
    del atoms[4]  # Br vacancy: 9 + 4 + 14 = 27 electrons
    system = qe_input_set(atoms, "static", "fast", PSEUDOS)["input_data"]["system"]
    assert system["nspin"] == 2 and system["tot_magnetization"] == 1.0
    assert system["occupations"] == "smearing"  # narrow: near-degenerate levels converge
    closed = qe_input_set(cspbbr3(), "static", "fast", PSEUDOS)["input_data"]["system"]
    assert "nspin" not in closed  # 34 electrons: closed shell, spin-restricted
    on = qe_input_set(cspbbr3(), "static", "fast", PSEUDOS, spin=True)["input_data"]["system"]
    assert on["nspin"] == 2 and on["tot_magnetization"] == 0.0
    off = qe_input_set(atoms, "static", "fast", PSEUDOS, spin=False)["input_data"]["system"]
    assert "nspin" not in off and off["occupations"] == "smearing"  # half-filled level
    metal = Atoms("Na", cell=[4.2, 4.2, 4.2], pbc=True)  # 9 electrons, a metal: no moment
    assert "nspin" not in qe_input_set(metal, "static", "fast", PSEUDOS)["input_data"]["system"]


def test_user_spin_settings_win_over_automatic_spin():
    atoms = cspbbr3()
    del atoms[4]  # odd: automatic nspin=2, tot_magnetization=1
    for user, want in (
        ({"nspin": 1}, {"nspin": 1}),
        ({"system.tot_magnetization": 3}, {"nspin": 2, "tot_magnetization": 3}),
        ({"nspin": 2, "starting_magnetization(1)": 0.5}, {"nspin": 2}),
    ):
        system = qe_input_set(atoms, "static", "fast", PSEUDOS, overrides=user, spin=True)[
            "input_data"
        ]["system"]
        got = {k: system[k] for k in ("nspin", "tot_magnetization") if k in system}
        assert got == want, user
    maker = get_maker("qe", "scf", spin=False)
    assert maker.spin is False and get_maker("qe", "scf").spin is None


def test_registry_errors_and_maker_fields():
    maker = get_maker("qe", "scf", protocol="fast", charge=None, input_set_overrides={})
    assert type(maker).__name__ == "QEStaticMaker" and maker.protocol == "fast"
    with pytest.raises(InputError) as err:
        get_maker("cp2k", "bands")
    assert "cannot run 'bands'" in err.value.problem
    with pytest.raises(InputError, match="unknown code"):
        get_maker("vasp", "scf")
    relax = get_maker("qe", "relax", defect=True)
    assert relax.defect and relax.input_set_overrides == {}
    assert get_maker("qe", "relax").input_set_overrides is not relax.input_set_overrides


def test_cli_spin_flag_maps_to_each_code_and_user_sections_win():
    from perovflow.cli.calc import _spin_fields

    assert _spin_fields("qe", True, {}) == {"spin": True}
    assert _spin_fields("qe", None, {"nspin": 2}) == {}
    cp2k = _spin_fields("cp2k", False, {"cutoff_eV": 3000})["input_set_overrides"]
    assert cp2k == {"cutoff_eV": 3000, "FORCE_EVAL": {"DFT": {"UKS": False}}}
    raw = {"FORCE_EVAL": {"DFT": {"UKS": True, "MULTIPLICITY": 3}}}
    assert _spin_fields("cp2k", False, raw) == {}  # the user's raw CP2K section wins
    with pytest.raises(InputError, match="does not take spin"):
        get_maker("mlip", "scf", spin=True)


def test_bands_line_density_follows_the_protocol_unless_given():
    import numpy as np

    from perovflow.engines.qe.jobs import band_path

    atoms = cspbbr3()
    # cubic path Γ-X-M-Γ-R-X|M-R: 2π/a·(1/2 + 1/2 + √2/2 + √3/2 + √3/2 + √2/2) Å⁻¹ long
    length = 2 * np.pi / 5.87 * (1 + np.sqrt(2) + np.sqrt(3))
    fast, _ = band_path(atoms, protocol="fast")  # 10 points per Å⁻¹
    standard, _ = band_path(atoms, protocol="standard")  # 20 per Å⁻¹
    mine, _ = band_path(atoms, 4.0, protocol="standard")  # the user's density wins
    assert len(fast) == pytest.approx(10 * length, rel=0.25)
    assert len(standard) == pytest.approx(20 * length, rel=0.25)
    assert len(mine) == pytest.approx(4 * length, rel=0.4)


def test_slow_family_raises_the_cutoff_only_where_it_is_in_the_cell(tmp_path):
    # standard's 80/320 Ry were measured for the GTH set; pw.x's built-in Na (ld1-sr-pbe)
    # needed 140/560 Ry for the same 1 meV/atom on NaCl (README, Sodium), so a cell with it
    # gets those; a user's cutoff still wins, and fast (which promises gaps only) keeps 25 Ry
    nacl = Atoms("NaCl", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], pbc=True,
                 cell=[[0, 2.82, 2.82], [2.82, 0, 2.82], [2.82, 2.82, 0]])  # fmt: skip

    def nc(el, family):  # seed reads the headers (ultrasoft or not): norm-conserving files
        path = tmp_path / f"{el}.{family}.upf"
        path.write_text(f'<UPF version="2.0.1">\n<PP_HEADER element="{el}" pseudo_type="NC"/>\n')
        return Pseudo(el, path.name, path, "0" * 32, family, {"Na": 9, "Cl": 7}[el])

    cl, na_sr = nc("Cl", "gth-pbe"), nc("Na", "ld1-sr-pbe")

    def ecut(atoms, pseudos, protocol="standard", overrides=None):
        system = qe_input_set(atoms, "static", protocol, pseudos, overrides=overrides)[
            "input_data"
        ]["system"]
        return round(system["ecutwfc"], 1), round(system["ecutrho"], 1)

    assert ecut(nacl, {"Na": na_sr, "Cl": cl}) == (140.0, 560.0)
    assert ecut(nacl, {"Na": na_sr, "Cl": cl}, "seed") == (140.0, 560.0)
    assert ecut(nacl, {"Na": nc("Na", "gth-pbe"), "Cl": cl}) == (80.0, 320.0)  # a GTH Na: no floor
    assert ecut(cspbbr3(), PSEUDOS) == (80.0, 320.0)
    assert ecut(nacl, {"Na": na_sr, "Cl": cl}, "fast") == (25.0, 100.0)
    user = {"ecutwfc": 100.0, "ecutrho": 400.0}
    assert ecut(nacl, {"Na": na_sr, "Cl": cl}, overrides=user) == (100.0, 400.0)
