"""Real cp2k.psmp on tiny systems (seconds each): crystal, cluster, relax, recovery, crash."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from pymatgen.core import Lattice, Molecule, Structure

from perovflow.engines.cp2k.jobs import CP2KRelaxMaker, CP2KStaticMaker, run_cp2k_task
from perovflow.errors import EngineError
from perovflow.projections import StateProjections

pytestmark = pytest.mark.cp2k
LOW_CUTOFF = {"cutoff_eV": 1400.0, "rel_cutoff_eV": 300.0}
#: the relaxation and recovery tests check mechanics, not the gap: the double-zeta basis
#: keeps them at seconds (with fast's TZVP they ran past 15 min on the shared machine)
DZVP = {"basis": "DZVP-MOLOPT-SR-GTH"}


def cspbbr3() -> Structure:
    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(5.87), ["Cs", "Pb", "Br"], [[0, 0, 0], [0.5] * 3, [0, 0.5, 0.5]]
    )


def cs4pbbr6() -> Molecule:
    d, e = 3.0, 2.5
    xyz = [(0, 0, 0), (d, 0, 0), (-d, 0, 0), (0, d, 0), (0, -d, 0), (0, 0, d), (0, 0, -d)]
    xyz += [(e, e, e), (-e, -e, e), (-e, e, -e), (e, -e, -e)]
    return Molecule(["Pb"] + ["Br"] * 6 + ["Cs"] * 4, xyz)


def test_crystal_static_gap_at_r_and_zero_forces(tmp_path):
    from jobflow import run_locally

    maker = CP2KStaticMaker(protocol="fast", input_set_overrides=LOW_CUTOFF)
    job = maker.make(cspbbr3())
    responses = run_locally(job, create_folders=True, root_dir=tmp_path, ensure_success=True)
    doc = responses[job.uuid][1].output
    assert doc.code == "cp2k" and doc.code_version.startswith("CP2K version")
    assert doc.formula == "CsPbBr3" and doc.natoms == 5
    assert doc.converged and doc.calc_type == "static"
    # PBE without spin-orbit, cubic CsPbBr3: direct gap at R of about 1.4-1.9 eV
    assert doc.electronic.is_direct and 1.0 < doc.electronic.band_gap_eV < 2.5
    assert [0.5, 0.5, 0.5] in doc.kpoints["kpoints"]
    assert doc.max_force_eV_per_A < 0.01  # every Pm-3m site is an inversion centre
    assert {p.name for p in doc.pseudopotentials} == {"GTH-PBE-q9", "GTH-PBE-q4", "GTH-PBE-q7"}


def test_cluster_static_homo_lumo_and_projections(tmp_path):
    overrides = {**LOW_CUTOFF, "vacuum_A": 3.0, "n_unoccupied": 4}
    maker = CP2KStaticMaker(protocol="fast", input_set_overrides=overrides)
    doc = run_cp2k_task(maker, cs4pbbr6(), None, tmp_path)
    dft = doc.input_parameters["FORCE_EVAL"]["DFT"]
    assert dft["POISSON"]["PERIODIC"] == "NONE"
    homo, lumo = doc.electronic.vbm_eV, doc.electronic.cbm_eV
    assert homo < lumo and doc.electronic.band_gap_eV > 1.0
    proj = StateProjections.from_dict(doc.projections)
    assert proj.weights.shape == (doc.electronic.nbands, 11)
    assert np.allclose(proj.weights.sum(axis=1), 1.0, atol=1e-4)
    i_homo = int(np.argmin(abs(proj.energies - homo)))
    assert proj.weights[i_homo, 1:7].sum() > 0.5  # Br 4p at the top of the valence states


def test_relax_lowers_energy_and_forces(tmp_path):
    mol = Molecule(["Cs", "Br"], [(0, 0, 0), (0, 0, 3.6)])
    overrides = {
        "cutoff_eV": 1000.0, "rel_cutoff_eV": 250.0, "vacuum_A": 2.8, "fmax": 0.1, "eps_scf": 1e-6,
        **DZVP,
    }  # fmt: skip
    maker = CP2KRelaxMaker(protocol="fast", input_set_overrides=overrides)
    doc = run_cp2k_task(maker, mol, None, tmp_path)
    energies = [f["energy_eV"] for f in doc.trajectory]
    assert doc.converged and doc.calc_type == "relax" and energies[-1] < energies[0]
    assert doc.max_force_eV_per_A < 0.1 * 1.05
    bond = np.linalg.norm(np.subtract(*[s["xyz"] for s in doc.structure["sites"]]))
    assert 2.9 < bond < 3.3  # CsBr gas-phase bond: 3.07 Å


def test_custodian_recovers_an_unconverged_scf(tmp_path):
    overrides = {
        "cutoff_eV": 800.0, "kpoints": "gamma", "scf": "ot", "projections": False,
        "FORCE_EVAL": {"DFT": {"SCF": {"MAX_SCF": 2, "EPS_SCF": 1e-6}}}, **DZVP,
    }  # fmt: skip
    maker = CP2KStaticMaker(protocol="fast", input_set_overrides=overrides, max_attempts=5)
    doc = run_cp2k_task(maker, cspbbr3(), None, tmp_path)
    handlers = {r.handler for r in doc.recovery}
    assert handlers == {"UnconvergedScfErrorHandler"} and doc.converged
    scf = doc.input_parameters["FORCE_EVAL"]["DFT"]["SCF"]
    assert doc.recovery[0].actions and scf["MAX_SCF"] > 2  # custodian's last resort was used
    assert scf["OT"]["MINIMIZER"] == "CG"


def test_crashed_executable_is_a_one_line_error_with_the_tail(tmp_path, monkeypatch):
    fake = tmp_path / "cp2k-crash"
    fake.write_text("#!/bin/sh\necho ' *** ABORT: out of memory in dbcsr ***'\nexit 134\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PEROVFLOW_CP2K__CMD", str(fake))
    with pytest.raises(EngineError) as err:
        run_cp2k_task(CP2KStaticMaker(protocol="fast"), cspbbr3(), None, tmp_path / "run")
    text = str(err.value)
    assert "status 134" in text and "out of memory" in text and "\n" not in text
    assert os.path.isfile(tmp_path / "run" / "cp2k.inp")
