"""CCD analysis against two parabolas computed by hand (constants from scipy, not ASE)."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from scipy import constants as sc

from perovflow.analysis.ccd import ccd_from_points, plot_ccd, write_ccd_report
from perovflow.errors import InputError

SHIFT_A = 0.1  # the Pb atom moves 0.1 Å along x between the two minima
M_PB = 207.2  # amu (pymatgen's Pb mass)
DQ = np.sqrt(M_PB) * SHIFT_A  # 1.43944 amu^½ Å: one atom moves
HW1, HW2 = 0.020, 0.015  # ħΩ (eV) of the two parabolas
ZPL = 2.0  # the q=0 minimum lies 2.0 eV above the q=+1 minimum (after the reservoir)
MU = 1.5  # electron reservoir (eV)
DIST = [-0.2, -0.1, 0.0, 0.1, 0.2, 1.0]


def _omega2(hw: float) -> float:
    """Ω² in eV/(amu Å²) from ħΩ in eV, by hand with SI constants."""
    omega_si = hw * sc.e / sc.hbar  # rad/s
    return omega_si**2 * sc.atomic_mass * 1e-20 / sc.e


def _points(first: bool, e_min: float, hw: float) -> list[dict]:
    lat = Lattice.cubic(6.0)
    out = []
    for d in DIST:
        x = SHIFT_A * (d if first else 1 - d)
        s = Structure(lat, ["Cs", "Pb"], [[0, 0, 0], [0.5 + x / 6.0, 0.5, 0.5]])
        q = DQ * (d if first else 1 - d)
        q0 = 0.0 if first else DQ
        out.append({"structure": s, "energy": e_min + 0.5 * _omega2(hw) * (q - q0) ** 2})
    return out


def test_hand_computed_parabolas(tmp_path):
    # state 1: q=+1, raw minimum 10 eV (10 + 1*MU after the reservoir); state 2: q=0
    p1 = _points(True, 10.0, HW1)
    p2 = _points(False, 10.0 + MU + ZPL, HW2)
    res = ccd_from_points(p1, p2, (1, 0), DIST, reservoir_eV=MU)
    d_fc1 = 0.5 * _omega2(HW1) * DQ**2  # 0.0991 eV
    d_fc2 = 0.5 * _omega2(HW2) * DQ**2
    assert res["delta_Q_amu05_A"] == pytest.approx(DQ, rel=1e-6)
    assert res["ground_charge"] == 1 and res["excited_charge"] == 0
    assert res["zpl_eV"] == pytest.approx(ZPL, abs=1e-9)
    assert res["absorption_eV"] == pytest.approx(ZPL + d_fc2, abs=1e-9)
    assert res["emission_eV"] == pytest.approx(ZPL - d_fc1, abs=1e-9)
    assert res["stokes_shift_eV"] == pytest.approx(d_fc1 + d_fc2, abs=1e-9)
    assert res["d_FC_ground_eV"] == pytest.approx(d_fc1, rel=1e-9)
    assert res["hbar_omega_ground_eV"] == pytest.approx(HW1, rel=1e-4)
    assert res["hbar_omega_excited_eV"] == pytest.approx(HW2, rel=1e-4)
    assert res["curves"][0]["huang_rhys"] == pytest.approx(d_fc1 / HW1, rel=1e-4)
    png = plot_ccd(res, tmp_path / "ccd.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    res["provenance"] = {"q=+1": ["/calc/a"], "q=+0": ["/calc/b"]}
    paths = write_ccd_report(res, tmp_path / "report", "CCD test")
    text = paths["markdown"].read_text()
    assert f"{ZPL - d_fc1:.2f} eV" in text and "ccd.png" in text  # the emission, the plot


def test_same_geometry_is_a_one_line_error():
    p1 = _points(True, 0.0, HW1)
    with pytest.raises(InputError, match="ΔQ = 0"):
        ccd_from_points(p1, p1, (1, 0), DIST)
    with pytest.raises(InputError, match="distortion 1"):
        ccd_from_points(p1[:-1], _points(False, 1.0, HW2)[:-1], (1, 0), DIST[:-1])
