"""Charged-defect corrections: the point-charge Ewald sum, site averages, Freysoldt vs eFNV.

Independent facts: the Madelung constants of the cubic lattices (Leslie & Gillan, J. Phys. C
18, 973 (1985); Makov & Payne, PRB 51, 4014 (1995)): sc 2.8373, bcc 3.6392, fcc 4.5848 for
E = q²α/(2εL), L the cubic lattice constant; the scaling of an anisotropic medium onto an
isotropic one; the Gaussian average of a plane wave; and, on stored real pp.x potentials of
a V_H⁺ vacancy in rocksalt LiH (fcc supercells of 16 and 54 atoms), the Makov–Payne term
q²α_M/(2εL) with the measured ε∞ = 3.61 of LiH (Staritzky & Walker 1956; Landolt–Börnstein).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from perovflow.analysis.corrections import choose_scheme, efnv, freysoldt, sampling_radius
from perovflow.analysis.ewald import COULOMB_EV_A, lattice_energy, point_charge_potential
from perovflow.analysis.formation import CellCalc, make_defect
from perovflow.grids import site_averages

DATA = Path(__file__).parents[1] / "data" / "analysis" / "qe" / "lih_vh"
EPS_LIH = 3.61  # ε∞ of LiH, measured
ALPHA_FCC = 4.5848


def alpha(matrix: np.ndarray, a: float) -> float:
    return -lattice_energy(matrix, 1.0) * 2 * a / COULOMB_EV_A


def test_madelung_constants_of_the_cubic_lattices():
    a = 6.0
    fcc = np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]) * a
    bcc = np.array([[-0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.5, 0.5, -0.5]]) * a
    assert alpha(np.eye(3) * a, a) == pytest.approx(2.8373, abs=2e-4)
    assert alpha(bcc, a) == pytest.approx(3.6392, abs=2e-4)
    assert alpha(fcc, a) == pytest.approx(ALPHA_FCC, abs=2e-4)
    # screened by ε and shrinking as 1/L
    assert lattice_energy(np.eye(3) * 2 * a, 4.0) == pytest.approx(
        lattice_energy(np.eye(3) * a, 1.0) / 8.0, rel=1e-8
    )


def test_anisotropic_medium_maps_onto_an_isotropic_one():
    """ε: r -> ε^(-1/2) r turns the medium isotropic and divides charges by √det ε."""
    rng = np.random.default_rng(3)
    eps = np.array([[5.0, 0.7, 0.0], [0.7, 3.0, 0.4], [0.0, 0.4, 8.0]])
    w, v = np.linalg.eigh(eps)
    inv_sqrt = v @ np.diag(w**-0.5) @ v.T
    matrix = np.array([[7.0, 0.0, 0.0], [-3.5, 6.1, 0.0], [0.0, 0.0, 9.0]])  # hexagonal-ish
    scaled = matrix @ inv_sqrt
    sqrt_det = np.sqrt(np.linalg.det(eps))
    assert lattice_energy(matrix, eps) == pytest.approx(
        lattice_energy(scaled, 1.0) / sqrt_det, rel=1e-7
    )
    r = rng.random((4, 3)) @ matrix
    assert point_charge_potential(matrix, eps, r) == pytest.approx(
        point_charge_potential(scaled, 1.0, r @ inv_sqrt) / sqrt_det, rel=1e-7
    )


def test_site_average_of_a_plane_wave_is_damped_by_the_gaussian():
    """<cos(2πx/a)> over exp(-d²/2σ²) = cos(2πx0/a) exp(-(2πσ/a)²/2) (cut at 3σ: 1 %)."""
    a, n = 6.0, 96
    x = np.arange(n) / n
    grid = np.broadcast_to(np.cos(2 * np.pi * x)[:, None, None], (n, n, n))
    sites = np.array([[0.1, 0.3, 0.7], [0.55, 0.0, 0.2]])
    got = site_averages(grid, np.eye(3) * a, sites, sigma_A=0.5)
    want = np.cos(2 * np.pi * sites[:, 0]) * np.exp(-((2 * np.pi * 0.5 / a) ** 2) / 2)
    assert got == pytest.approx(want, abs=0.01)


def test_user_scheme_wins_and_auto_follows_the_anisotropy():
    aniso = np.diag([4.0, 4.0, 6.0])
    assert choose_scheme("auto", aniso) == "efnv"
    assert choose_scheme("auto", 4.0) == "freysoldt"
    assert choose_scheme("freysoldt", aniso) == "freysoldt"
    assert choose_scheme(None, aniso) is None


def _cells(n: int) -> tuple[CellCalc, CellCalc]:
    out = []
    for name, q in (("bulk", 0), ("vh", 1)):
        with gzip.open(DATA / f"n{n}_{name}.json.gz", "rt") as fh:
            doc = json.load(fh)
        out.append(CellCalc(doc["structure"], doc["energy_eV"], q, doc["potential"], name))
    return out[0], out[1]


@pytest.mark.parametrize("n", [2, 3])
def test_freysoldt_and_efnv_match_makov_payne_on_real_pp_potentials(n):
    bulk, vac = _cells(n)
    _, fpos = make_defect(bulk.get_structure(), vac.get_structure())
    a_conv = vac.get_structure().lattice.abc[0] * np.sqrt(2)  # fcc supercell: a = √2 |a_i|
    makov_payne = COULOMB_EV_A * ALPHA_FCC / (2 * EPS_LIH * a_conv)
    fnv, _, terms = freysoldt(bulk, vac, EPS_LIH, fpos)
    assert terms["electrostatic_eV"] == pytest.approx(makov_payne, rel=0.02)
    assert 0 < fnv == pytest.approx(makov_payne, rel=0.30)
    kumagai, _, kterms = efnv(bulk, vac, EPS_LIH, fpos)
    assert kterms["point_charge_eV"] == pytest.approx(makov_payne, rel=1e-3)
    assert kterms["n_sampled"] > 0
    assert kterms["sampling_radius_A"] == pytest.approx(vac.get_structure().lattice.abc[0] / 2)
    assert kumagai == pytest.approx(fnv, abs=0.05)


def test_the_corrections_shrink_as_one_over_l():
    values = {}
    for n in (2, 3):
        bulk, vac = _cells(n)
        _, fpos = make_defect(bulk.get_structure(), vac.get_structure())
        values[n] = (freysoldt(bulk, vac, EPS_LIH, fpos)[0], efnv(bulk, vac, EPS_LIH, fpos)[0])
    for k in range(2):
        assert values[2][k] / values[3][k] == pytest.approx(3 / 2, rel=0.2)


def test_sampling_radius_of_a_cubic_and_an_fcc_cell():
    assert sampling_radius(type("L", (), {"matrix": np.eye(3) * 8.0})()) == pytest.approx(4.0)
    fcc = np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]) * 8.0
    assert sampling_radius(type("L", (), {"matrix": fcc})()) == pytest.approx(8.0 / np.sqrt(2) / 2)
