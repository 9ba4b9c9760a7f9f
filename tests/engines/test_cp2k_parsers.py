"""CP2K parsers on stored real outputs (cp2k 2023.1): a Cs4PbBr6 cluster and cubic CsPbBr3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perovflow.engines.cp2k.parsers import (
    band_edges,
    parse_output,
    read_kpoints,
    read_projections,
)
from perovflow.errors import EngineError

DATA = Path(__file__).parents[1] / "data" / "engines" / "cp2k"
CLUSTER_SPECIES = ["Pb"] + ["Br"] * 6 + ["Cs"] * 4


def test_cluster_output_energy_forces_and_mos(cp2k_run):
    res = parse_output(cp2k_run("cs4pbbr6_cluster") / "cp2k.out", natoms=11)
    assert res.completed and res.scf_converged and res.version.startswith("CP2K version")
    assert res.energy_eV < 0
    # Pb sits at the centre of a Td-symmetric cluster: no net force on it
    assert np.linalg.norm(res.forces[0]) < 0.05
    # 82 valence electrons (Pb 4 + 6 Br x 7 + 4 Cs x 9): 41 doubly occupied MOs
    occ = res.occupations[0, 0]
    assert (occ > 1.9).sum() == 41 and (occ < 0.1).sum() == occ.size - 41
    edges = band_edges(res.eigenvalues, res.occupations)
    assert edges["vbm_eV"] < edges["cbm_eV"] and 1.0 < edges["band_gap_eV"] < 5.0


def test_cluster_projections_are_per_atom_mulliken_weights(cp2k_run):
    folder = cp2k_run("cs4pbbr6_cluster")
    proj = read_projections(folder, CLUSTER_SPECIES, list(range(1, 12)))
    assert proj.weights.shape == (proj.nstates, 11)
    assert np.allclose(proj.weights.sum(axis=1), 1.0, atol=1e-4)
    assert np.allclose(proj.orbital_weights.sum(axis=2), proj.weights)
    homo = int(np.where(proj.occupations > 0.5)[0].max())
    w = proj.weights[homo]
    # lead-halide valence-band top: Br 4p antibonding with Pb 6s
    assert w[1:7].sum() > 0.5 and proj.orbital_weights[homo, 0, 0] > 0.1
    # the HOMO is the totally symmetric Pb 6s - Br 4p state: the six Br carry equal weight
    assert np.ptp(w[1:7]) < 0.05 * w[1:7].mean()


def test_kpoint_output_puts_both_edges_at_r(cp2k_run):
    folder = cp2k_run("cspbbr3_kpoints")
    res = parse_output(folder / "cp2k.out", natoms=5)
    assert res.eigenvalues.shape[:2] == (1, 8)
    params_text = (folder / "cp2k.inp").read_text()
    kpts = [list(map(float, ln.split()[1:5])) for ln in params_text.splitlines() if "KPOINT " in ln]
    kinfo = read_kpoints({"FORCE_EVAL": {"DFT": {"KPOINTS": {"KPOINT": kpts}}}})
    r_index = kinfo["kpoints"].index([0.5, 0.5, 0.5])
    occ = res.occupations[0]
    assert ((occ > 1.0).sum(axis=1) == 17).all()  # 34 electrons at every k
    vb = np.where(occ > 1.0, res.eigenvalues[0], -np.inf).max(axis=1)
    cb = np.where(occ < 1.0, res.eigenvalues[0], np.inf).min(axis=1)
    assert vb.argmax() == r_index and cb.argmin() == r_index  # cubic CsPbBr3: direct gap at R
    edges = band_edges(res.eigenvalues, res.occupations)
    assert edges["is_direct"] and 1.0 < edges["band_gap_eV"] < 2.5


def test_truncated_output_is_a_one_line_error(cp2k_run):
    folder = cp2k_run("cs4pbbr6_cluster")
    out = folder / "cp2k.out"
    text = out.read_text()
    out.write_text(text[: len(text) // 2])
    with pytest.raises(EngineError) as err:
        parse_output(out)
    assert "truncated" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(EngineError, match="cannot read"):
        parse_output(folder / "missing.out")


def test_truncated_pdos_file_is_an_error(cp2k_run):
    folder = cp2k_run("cs4pbbr6_cluster")
    pdos = folder / "cp2k-list3-1.pdos"
    pdos.write_text(pdos.read_text()[:-30])
    with pytest.raises(EngineError) as err:
        read_projections(folder, CLUSTER_SPECIES, list(range(1, 12)))
    assert "list3" in str(err.value) and "\n" not in str(err.value)


def test_open_shell_cation_has_two_spin_channels_and_no_gap(cp2k_run):
    folder = cp2k_run("csbr_cation_uks")  # CsBr+ : 9 + 7 - 1 = 15 electrons, doublet
    res = parse_output(folder / "cp2k.out", natoms=2)
    assert res.eigenvalues.shape[0] == 2
    alpha, beta = res.occupations[:, 0].sum(axis=1)
    assert alpha == pytest.approx(8, abs=1e-3) and beta == pytest.approx(7, abs=1e-3)
    # the hole is shared by the two degenerate Br 4p(pi) beta orbitals: no gap
    assert band_edges(res.eigenvalues, res.occupations)["band_gap_eV"] is None
    proj = read_projections(folder, ["Cs", "Br"], [1, 2])
    assert set(proj.spins.tolist()) == {0, 1} and proj.nstates == 2 * res.eigenvalues.shape[2]
    assert np.allclose(proj.weights.sum(axis=1), 1.0, atol=1e-4)


def test_mo_eigenvalues_of_only_some_kpoints_are_refused(cp2k_run):
    # a real cp2k.psmp run under mpirun -np 2 with k-point groups: the I/O rank printed the
    # MOs of k-points 1-4 of 8, and R (where both band edges lie) was not among them
    folder = cp2k_run("kpoint_groups")
    text = (folder / "cp2k.out").read_text()
    assert "List of Kpoints [2 Pi/Bohr]                                        8" in text
    assert text.count("EIGENVALUES AND OCCUPATION NUMBERS FOR K POINT") == 4
    with pytest.raises(EngineError) as err:
        parse_output(folder / "cp2k.out")
    assert "4 of 8 k-points" in err.value.problem and "PARALLEL_GROUP_SIZE 0" in err.value.fix
