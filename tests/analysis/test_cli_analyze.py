"""The ``perovflow analyze`` and ``report`` commands on stored real outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perovflow.engines.qe.projwfc import read_text as read_gz


def test_ipr_json_lists_every_state(cli, qe_data: Path, tmp_path: Path):
    code, out, err = cli(
        "analyze", "ipr", qe_data / "cs4pbbr6_vbr", "--json", "--plot", tmp_path / "ipr.png"
    )
    assert code == 0, err
    data = json.loads(out)
    assert len(data["states"]) == 90  # nbnd of the run, Gamma only
    keys = {"energy_eV", "ipr", "localized", "top_atoms"}
    assert all(keys <= set(s) for s in data["states"])
    assert (tmp_path / "ipr.png").stat().st_size > 5000


def test_pdos_bands_and_report(cli, qe_data: Path, tmp_path: Path):
    code, out, err = cli("analyze", "pdos", qe_data / "cspbbr3_scf", "--by", "orbital", "--json")
    assert code == 0, err
    assert set(json.loads(out)["integrals"]) >= {"s", "p"}
    code, out, err = cli("analyze", "bands", qe_data / "cspbbr3_bands", "--json")
    assert code == 0, err
    assert json.loads(out)["vbm_kpoint"]["label"] == "R"
    code, out, err = cli("report", qe_data, "-o", tmp_path / "rep", "--json")
    assert code == 0, err
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "cs4pbbr6_vbr: IPR" in md and "cspbbr3_bands: band structure" in md
    answer = md.splitlines()[2]  # the answer comes first: cubic CsPbBr3 is direct at R
    assert answer.startswith("**") and "cspbbr3_bands has a 1.55 eV gap (direct at R)" in answer
    assert str((qe_data / "cs4pbbr6_vbr").resolve()) in md  # provenance of the numbers


def test_formation_spec(cli, qe_data: Path, tmp_path: Path):
    planar = {}
    for name in ("cs4pbbr6", "cs4pbbr6_vbr"):
        planar[name] = tmp_path / f"{name}.json"
        planar[name].write_text(read_gz(qe_data / name / "planar_eV.json.gz"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"bulk: {{ref: {qe_data / 'cs4pbbr6'}}}\n"
        f"defects:\n  - {{ref: {qe_data / 'cs4pbbr6_vbr'}, charge: 1, label: V_Br}}\n"
        "phases: {Cs: -1000.0, Pb: -500.0, Br: -400.0, CsBr: -1404.0, PbBr2: -1306.0}\n"
        "correction: none\n"
    )
    code, out, err = cli("analyze", "formation", spec, "--json")
    assert code == 0, err
    data = json.loads(out)
    # band edges default to the bulk run's HOMO/LUMO
    assert data["vbm_eV"] == 2.4473 and abs(data["band_gap_eV"] - (6.1709 - 2.4473)) < 1e-9
    assert data["entries"][0]["charge"] == 1


def test_bad_inputs_are_one_line_errors(cli, qe_data: Path, tmp_path: Path):
    text = read_gz(qe_data / "cs4pbbr6" / "projwfc.out.gz")
    (tmp_path / "projwfc.out").write_text(text[: len(text) // 2])
    code, _, err = cli("analyze", "ipr", tmp_path)
    assert code == 2 and err.startswith("error:") and "truncated" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = cli("analyze", "pdos", qe_data / "cspbbr3_scf", "--emin", "50", "--emax", "60")
    assert code == 2 and "no state in the energy window" in err
    code, _out, err = cli("analyze", "ipr", "no-such-task-id")
    assert code == 2 and "neither a file/folder nor a task id" in err


def test_neb_cli_on_trajectory(cli, tmp_path: Path):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    images = []
    for x in np.linspace(0, 1, 7):
        a = Atoms("H", positions=[[2 * x, 0, 0]])
        a.calc = SinglePointCalculator(
            a,
            energy=0.3 * np.sin(np.pi * x) ** 2,
            forces=[[-0.3 * np.pi * np.sin(2 * np.pi * x) / 2, 0, 0]],
        )
        images.append(a)
    write(tmp_path / "band.extxyz", images)
    code, out, err = cli("analyze", "neb", tmp_path / "band.extxyz", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert abs(data["barrier_forward_eV"] - 0.3) < 0.01 and data["ts_image"] == 3
    assert abs(data["barrier_forward_kcal_mol"] - 23.0605 * data["barrier_forward_eV"]) < 1e-4


def test_ipr_and_pdos_of_a_cp2k_folder(cli, cp2k_run):
    """A real CP2K run folder (Cs4PbBr6 cluster: Pb, 6 Br, 4 Cs) analysed like a QE one."""
    tmp_path = cp2k_run("cs4pbbr6_cluster")
    code, out, err = cli("analyze", "ipr", tmp_path, "--json")
    assert code == 0, err
    states = json.loads(out)["states"]
    assert len(states) == len(np.loadtxt(tmp_path / "cp2k-list1-1.pdos", ndmin=2))
    # 82 valence electrons (Pb 4 + 6 Br x 7 + 4 Cs x 9): 41 doubly occupied MOs
    occupied = [s for s in states if s["occupation"] > 0]
    assert len(occupied) == 41
    # the highest occupied MO belongs to the [PbBr6] octahedron (atoms 0-6), not to Cs
    homo = max(occupied, key=lambda s: s["energy_eV"])
    assert all(a["element"] in ("Pb", "Br") for a in homo["top_atoms"])
    code, out, err = cli("analyze", "pdos", tmp_path, "--shell", "6.5,6.5,6.5:3.5", "--json")
    assert code == 0, err
    assert set(json.loads(out)["integrals"]) == {"shell<3.5Å", "rest"}


def test_cp2k_folder_without_projections_is_a_one_line_error(cli, cp2k_run):
    code, _, err = cli("analyze", "ipr", cp2k_run("cspbbr3_kpoints"))
    assert code == 2
    assert "no per-atom projections" in err and len(err.strip().splitlines()) == 1


@pytest.mark.qe
@pytest.mark.cp2k
def test_every_qe_folder_of_the_makers_chain(cli, tmp_path: Path):
    """scf -> bands -> dos (nscf + projwfc.x) with the QE makers, as the demo runs them
    (ASE's espresso.pwo, pwscf.save), on CsBr (CsCl type, 2 atoms, 20 Ry): ``analyze``
    reads each folder; the pw.x-only ones give a one-line error for projections."""
    from pymatgen.core import Lattice, Structure

    from perovflow.engines.qe.jobs import QEBandsMaker, QEDosMaker, QEStaticMaker, run_qe_task

    csbr = Structure(Lattice.cubic(4.296), ["Cs", "Br"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    tiny = {"ecutwfc": 20, "ecutrho": 80, "conv_thr": 1e-6}
    dirs = {}
    for name, maker in (
        ("scf", QEStaticMaker(protocol="fast", input_set_overrides=tiny | {"kpts": [2, 2, 2]})),
        ("bands", QEBandsMaker(protocol="fast", input_set_overrides=tiny, line_density=3)),
        ("dos", QEDosMaker(protocol="fast", input_set_overrides=tiny | {"kpts": [2, 2, 2]})),
    ):
        dirs[name] = tmp_path / name
        dirs[name].mkdir()
        run_qe_task(maker, csbr, None if name == "scf" else str(dirs["scf"]), dirs[name])
    code, out, err = cli("analyze", "bands", dirs["bands"], "--json")
    assert code == 0, err
    bands = json.loads(out)
    # CsBr (CsCl type): a wide-gap ionic insulator (PBE ~4 eV, experiment 7.3 eV)
    assert 2.5 < bands["band_gap_eV"] < 7.5 and not bands["is_metal"]
    for cmd in ("pdos", "ipr"):
        code, out, err = cli("analyze", cmd, dirs["dos"], "--json")
        assert code == 0, err
    data = json.loads(out)
    # 16 valence electrons (Cs 9 + Br 7): 8 occupied bands at each of the 4 k-points
    occupied = [s for s in data["states"] if s["occupation"] > 0.5]
    assert len(occupied) == 8 * len({s["k"] for s in data["states"]})
    vbm = max(occupied, key=lambda s: s["energy_eV"])
    assert vbm["shares"]["Br"] > 0.5  # the valence band top is Br 4p
    for name in ("scf", "bands"):
        code, _, err = cli("analyze", "ipr", dirs[name])
        assert code == 2 and "no projwfc.x output" in err and len(err.strip().splitlines()) == 1
