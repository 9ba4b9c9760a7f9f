"""ML potentials: packaged weights only (offline), cached model, static and relax makers."""

from __future__ import annotations

import copy
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Molecule, Structure

from perovflow.engines.mlip import calculator as mlip_calc
from perovflow.engines.mlip.jobs import MLIPRelaxMaker, MLIPStaticMaker, run_mlip_task
from perovflow.errors import EngineError


def cspbbr3() -> Structure:
    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(5.87), ["Cs", "Pb", "Br"], [[0, 0, 0], [0.5] * 3, [0, 0.5, 0.5]]
    )


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.mlip
def test_packaged_chgnet_loads_offline_and_is_cached(no_network, capsys):
    mlip_calc._load.cache_clear()
    first = mlip_calc.get_mlip_calculator("chgnet", "cpu")
    second = mlip_calc.get_mlip_calculator()
    assert capsys.readouterr().out == ""  # CHGNet's chatter must not spoil --json output
    assert first is not second and first.model is second.model  # one model per process
    assert mlip_calc.model_version().startswith("chgnet ") and "0.3.0" in mlip_calc.model_version()


@pytest.mark.mlip
def test_static_ideal_cubic_cell_has_no_forces(no_network, tmp_path):
    doc = run_mlip_task(MLIPStaticMaker(), cspbbr3(), tmp_path)
    assert doc.code == "mlip" and doc.calc_type == "static"
    assert doc.max_force_eV_per_A < 1e-3  # every Pm-3m site is an inversion centre
    stress = np.array(doc.stress_GPa)
    assert np.allclose(stress, np.diag(np.diag(stress)), atol=1e-3)  # cubic: diagonal stress
    assert np.allclose(np.diag(stress), stress[0, 0], atol=1e-3)


@pytest.mark.mlip
def test_relax_lowers_energy_and_forces_of_a_rattled_supercell(tmp_path):
    cell = cspbbr3() * (2, 2, 2)
    atoms_rng = np.random.default_rng(7)
    rattled = cell.copy()
    for i in range(len(rattled)):
        rattled.translate_sites([i], atoms_rng.normal(0, 0.08, 3), frac_coords=False)
    maker = MLIPRelaxMaker(fmax=0.05, steps=300, optimizer="BFGS")
    snapshot = copy.deepcopy(maker)
    start = run_mlip_task(MLIPStaticMaker(), rattled, tmp_path)
    doc = run_mlip_task(maker, rattled, tmp_path)
    assert maker == snapshot
    assert doc.converged and doc.input_parameters["fmax"] == 0.05  # the user's value, not 0.02
    assert doc.energy_eV < start.energy_eV - 0.05
    assert doc.max_force_eV_per_A < 0.05 < start.max_force_eV_per_A
    assert doc.trajectory[0]["energy_eV"] > doc.trajectory[-1]["energy_eV"]


@pytest.mark.mlip
def test_cell_relaxation_and_cluster_static(tmp_path):
    compressed = cspbbr3()
    compressed.scale_lattice(5.6**3)
    maker = MLIPRelaxMaker(fmax=0.5, input_set_overrides={"relax_cell": True, "fmax": 0.02})
    doc = run_mlip_task(maker, compressed, tmp_path)  # the overrides win over the fields
    a = doc.structure["lattice"]["a"]
    assert doc.converged and 5.85 < a < 6.15  # PBE-level cubic CsPbBr3: a ≈ 6.0 Å (exp. 5.87)
    mol = Molecule(["Cs", "Br"], [(0, 0, 0), (0, 0, 3.1)])
    cluster = run_mlip_task(MLIPStaticMaker(), mol, tmp_path)
    assert cluster.stress_GPa is None and cluster.input_parameters["cluster_box"]
    assert np.allclose(np.sum(cluster.forces_eV_per_A, axis=0), 0, atol=1e-3)  # Newton's 3rd law


@pytest.mark.mlip
def test_sevennet_uses_its_packaged_weights(no_network):
    calc = mlip_calc.get_mlip_calculator("sevenn", "cpu")
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(cspbbr3())
    atoms.calc = calc
    assert np.abs(atoms.get_forces()).max() < 1e-3 and atoms.get_potential_energy() < 0


def test_unknown_override_is_rejected():
    from perovflow.errors import InputError

    with pytest.raises(InputError, match="fmx"):
        run_mlip_task(MLIPStaticMaker(input_set_overrides={"fmx": 1}), cspbbr3(), Path("."))


def test_missing_package_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "chgnet", None)
    mlip_calc._load.cache_clear()
    try:
        with pytest.raises(EngineError) as err:
            mlip_calc.get_mlip_calculator("chgnet")
        assert "perovflow[mlip]" in str(err.value) and "\n" not in str(err.value)
    finally:
        mlip_calc._load.cache_clear()
