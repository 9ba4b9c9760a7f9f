"""CP2K as an ASE calculator: real cp2k.psmp on Br2 in a 7 Å periodic box (2-3 s a call).

Physics checks: forces equal minus the finite-difference gradient of the energy, a stretched
bond pulls its atoms together, the energy equals the static maker's, a restarted SCF is
shorter; plus a crashed/missing executable and a short NEB through the calculator factory.
"""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from ase import Atoms

from perovflow.engines.cp2k.ase_calculator import CP2KCalculator, cp2k_calculator
from perovflow.errors import EngineError

pytestmark = pytest.mark.cp2k
#: tiny settings: low cutoff, Γ only, tight SCF so finite differences resolve 1e-5 eV
SETTINGS = {"cutoff_eV": 1000.0, "rel_cutoff_eV": 250.0, "kpoints": "gamma", "eps_scf": 1e-8}


@pytest.fixture(autouse=True)
def _quick_mpi_start(monkeypatch):
    """OpenMPI retries an absent munge daemon for ~2 s per start; PMIx's native auth does not."""
    if "PMIX_MCA_psec" not in os.environ:
        monkeypatch.setenv("PMIX_MCA_psec", "native")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def br2(bond: float = 2.5) -> Atoms:
    """Br2 (PBE bond about 2.31 Å), slightly tilted, centred in a 7 Å periodic box.

    (Not HBr: at test cutoffs H's tight MOLOPT exponents alias on the grid and its energy
    jumps by tenths of an eV for 0.01 Å moves.)
    """
    half = 3.5
    xyz = [(half, half, half - bond / 2), (half + 0.2, half + 0.1, half + bond / 2)]
    return Atoms("Br2", positions=xyz, cell=[2 * half] * 3, pbc=True)


def test_forces_are_minus_the_energy_gradient(tmp_path):
    calc = cp2k_calculator(tmp_path / "calc", "fast", SETTINGS)
    atoms = br2()
    atoms.calc = calc
    forces = atoms.get_forces()
    bond = atoms.positions[1] - atoms.positions[0]
    assert forces[1] @ bond < -0.5  # a stretched bond pulls the atoms together (eV/Å)
    step = 0.01
    for atom, axis in ((1, 2), (0, 0)):
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * step
            moved.calc = calc
            energies.append(moved.get_potential_energy())
        finite_difference = -(energies[0] - energies[1]) / (2 * step)
        assert finite_difference == pytest.approx(forces[atom, axis], rel=0.03, abs=0.01)
    assert atoms.get_potential_energy() == atoms.calc.results["free_energy"]


def test_energy_and_forces_equal_the_static_makers(tmp_path):
    from jobflow import run_locally
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.engines.cp2k.jobs import CP2KStaticMaker

    atoms = br2()
    atoms.calc = CP2KCalculator(tmp_path / "calc", "fast", SETTINGS)
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    maker = CP2KStaticMaker(protocol="fast", input_set_overrides=SETTINGS)
    job = maker.make(AseAtomsAdaptor.get_structure(br2()))
    out = run_locally(job, create_folders=True, root_dir=tmp_path / "maker", ensure_success=True)
    doc = out[job.uuid][1].output
    assert doc.projections is not None  # the maker's own defaults (PDOS) were in force
    assert energy == pytest.approx(doc.energy_eV, abs=1e-5)
    assert np.allclose(forces, doc.forces_eV_per_A, atol=1e-4)
    assert not (tmp_path / "calc" / "cp2k-list1-1.pdos").exists()  # calculator: no PDOS


def test_next_geometry_restarts_from_the_previous_wavefunction(tmp_path):
    restarted = CP2KCalculator(tmp_path / "restarted", "fast", SETTINGS)
    fresh = CP2KCalculator(tmp_path / "fresh", "fast", SETTINGS, reuse_wavefunction=False)
    br2(2.5).calc = restarted
    restarted.get_potential_energy(br2(2.5))
    energies = [calc.get_potential_energy(br2(2.45)) for calc in (restarted, fresh)]
    assert energies[0] == pytest.approx(energies[1], abs=1e-4)
    first, second = restarted.runs
    assert not first["wavefunction_restart"] and second["wavefunction_restart"]
    assert not fresh.runs[0]["wavefunction_restart"]
    inp = (tmp_path / "restarted" / "cp2k.inp").read_text()
    assert "SCF_GUESS RESTART" in inp and "WFN_RESTART_FILE_NAME previous.wfn" in inp
    assert second["scf_steps"] < fresh.runs[0]["scf_steps"]
    assert second["scf_steps"] < first["scf_steps"]


@pytest.mark.parametrize("broken", ["missing", "crash"])
def test_broken_executable_is_a_one_line_engine_error(tmp_path, monkeypatch, broken):
    exe = tmp_path / "cp2k-broken"
    if broken == "crash":
        exe.write_text("#!/bin/sh\necho ' *** ABORT: out of memory in dbcsr ***'\nexit 134\n")
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PEROVFLOW_CP2K__CMD", str(exe))
    atoms = br2()
    atoms.calc = cp2k_calculator(tmp_path / "calc", "fast", SETTINGS, max_attempts=2)
    with pytest.raises(EngineError) as err:
        atoms.get_potential_energy()
    text = str(err.value)
    assert "\n" not in text
    assert ("cannot start" in text) if broken == "missing" else ("out of memory" in text)


def test_user_settings_win_over_the_calculator_defaults(tmp_path):
    calc = CP2KCalculator(tmp_path, "fast", {"projections": True, "max_scf": 7})
    assert calc.maker().input_set_overrides == {"projections": True, "max_scf": 7}
    assert CP2KCalculator(tmp_path, "fast").maker().input_set_overrides == {"projections": False}
    calc.maker().input_set_overrides["max_scf"] = 1
    assert calc.overrides["max_scf"] == 7  # each maker is a fresh copy


def test_factory_gives_per_image_folders_and_a_short_neb_runs(tmp_path):
    from ase.mep import NEB
    from ase.optimize import FIRE

    from perovflow.workflows.calculators import calculator_factory

    calc_for = calculator_factory("cp2k", tmp_path, "fast", SETTINGS)
    assert calc_for(1) is calc_for(1) and calc_for(1) is not calc_for(2)
    images = [br2(2.4), br2(2.55), br2(2.7)]
    for index, image in zip((0, 1, -1), images, strict=True):
        image.calc = calc_for(index)
    band = NEB(images, method="improvedtangent")
    band.interpolate()
    assert not FIRE(band, logfile=None).run(fmax=0.01, steps=2)  # 2 steps, not converged
    assert {p.name for p in tmp_path.iterdir()} >= {"image_00", "image_01", "image_end"}
    middle = calc_for(1).runs
    assert [len(calc_for(i).runs) for i in (0, -1)] == [1, 1] and len(middle) == 3  # FIRE: 0-2
    assert [r["wavefunction_restart"] for r in middle] == [False, True, True]
    assert (tmp_path / "image_01" / "cp2k.out").read_text().count("PROGRAM ENDED AT") == 1
    # beyond the 2.28 Å equilibrium the energy rises with the bond length along the band
    energies = [image.get_potential_energy() for image in images]
    assert 2.4 < images[1].get_distance(0, 1) < 2.7 and energies[0] < energies[1] < energies[2]
    assert len(middle) == 3  # those energies were the stored results, no extra CP2K run
