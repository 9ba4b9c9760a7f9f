"""Parabolic effective masses at the band edges of a band structure along a k-path.

A parabola ``E = E0 + a (k - k0)^2`` is fitted on the ``fit_points`` k-points nearest to
each band edge along every path segment through it: ``m* = hbar^2 / (2 a)`` =
3.80998 eV·Å² / a (in electron masses; reported positive for both holes and electrons,
with the curvature sign checked).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase.units import _e, _hbar, _me

#: hbar^2 / (2 m_e) in eV·Å² (3.80998), from ASE's CODATA constants
HBAR2_OVER_2ME = _hbar**2 / (2 * _me) / _e * 1e20


def _kname(bs: Any, kidx: int) -> str:
    """Γ, B₁ ... for a labelled k-point, ``k12`` (its index on the path) otherwise."""
    from perovflow.structures.kpath import pretty_label

    return pretty_label(bs.kpoints[kidx].label) or f"k{kidx}"


def _branches_through(bs: Any, kidx: int) -> list[dict[str, Any]]:
    return [b for b in bs.branches if b["start_index"] <= kidx <= b["end_index"]]


def _fit_mass(dist: np.ndarray, energy: np.ndarray) -> float | None:
    """Curvature a of E = E0 + a x^2 (x = distance from the edge), least squares."""
    if dist.size < 2 or np.ptp(dist) <= 1e-8:
        return None
    x2 = dist**2
    design = np.stack([np.ones_like(x2), x2], axis=1)
    coef, *_ = np.linalg.lstsq(design, energy, rcond=None)
    return float(coef[1])


def _segments(bs: Any, kidx: int, fit_points: int) -> list[tuple[list[int], int]]:
    """(k indices from the edge outwards, segment end) for each direction through ``kidx``."""
    out = []
    for branch in _branches_through(bs, kidx):
        for step in (-1, 1):
            stop = branch["start_index"] if step < 0 else branch["end_index"]
            idx = list(range(kidx, stop + step, step))[: fit_points + 1]
            if len(idx) >= 3:
                out.append((idx, stop))
    return out


def effective_masses(bs: Any, fit_points: int = 3) -> list[dict[str, Any]]:
    """Parabolic effective masses at the VBM and CBM along each path direction."""
    if bs.is_metal():
        return []
    out = []
    dist = np.asarray(bs.distance)
    for carrier, edge in (("hole", bs.get_vbm()), ("electron", bs.get_cbm())):
        for spin, bands in edge["band_index"].items():
            for kidx in sorted(set(edge["kpoint_index"])):
                for idx, stop in _segments(bs, kidx, fit_points):
                    for band in sorted(set(bands)):
                        e = np.asarray(bs.bands[spin][band])[idx]
                        a = _fit_mass(np.abs(dist[idx] - dist[kidx]), e)
                        if a is None or a == 0:
                            continue
                        mass = HBAR2_OVER_2ME / a
                        out.append({
                            "carrier": carrier, "spin": int(spin), "band": int(band),
                            "kpoint": _kname(bs, kidx),
                            "direction": f"{_kname(bs, idx[0])}→{_kname(bs, stop)}",
                            "mass_me": abs(mass),
                            "curvature_ok": (mass < 0) if carrier == "hole" else (mass > 0),
                            "fit_points": len(idx),
                        })  # fmt: skip
    return out
