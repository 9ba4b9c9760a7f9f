"""The one band-edge rule of perovflow, shared by every engine and every analysis.

Engines (QE, CP2K) and analyses (IPR, PDOS, vacancy levels, reports) all call
:func:`band_edges`; nothing else decides which states are occupied. The rule:

* a state is **occupied** when it holds more than half of its maximum occupation
  (``occupations`` are fractions of that maximum: 0..1 per spin channel);
* **VBM** = highest occupied state, **CBM** = lowest empty state, per spin channel and over
  both channels (the defect-cell gap is ``CBM - VBM`` over both channels: an occupied
  spin-up level and its empty spin-down partner bound it in an open-shell defect cell);
* a state holding between 10 % and 90 % of its maximum is partly filled: there is no gap
  (metal, or a degenerate level smeared across the Fermi level);
* when a code gives no occupations, :func:`occupations_from_count` fills the lowest
  ``n_up`` / ``n_down`` bands at each k-point (integer filling of an insulator, the number
  of electrons split by the total magnetisation) and :func:`occupations_from_fermi` fills
  the states below the Fermi level (one per spin channel when the code reports two).

This module imports nothing from ``perovflow.engines`` or ``perovflow.analysis``, so both
can use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

OCCUPIED_FRACTION = 0.5  # occupied: more than half the maximum occupation
PARTIAL = (0.1, 0.9)  # fractions in between: a partly filled state, no gap
GAP_MIN_EV = 1e-3  # a smaller cbm - vbm counts as no gap
SPIN_NAMES = ("up", "down")


def occupations_from_count(
    eigenvalues: np.ndarray,
    nelect: float,
    magnetization: float | None = None,
    noncolin: bool = False,
) -> np.ndarray | None:
    """Integer filling of eigenvalues ``[spin][k][band]``: 1 for the lowest bands, else 0.

    Parameters
    ----------
    eigenvalues
        Array (nspin, nk, nbands), eV.
    nelect
        Number of valence electrons.
    magnetization
        ``n_up - n_down`` (Bohr magnetons) for two spin channels; None: 0 for an even and 1
        for an odd electron count.
    noncolin
        Non-collinear / spin–orbit bands (one spin channel, spinor bands): one electron per
        band, so ``nelect`` bands are filled.

    Returns
    -------
    Occupation fractions of the same shape, or None when the filling is not integer
    (fractional electron count or magnetisation, or more electrons than bands).
    """
    eig = np.asarray(eigenvalues, dtype=float)
    nspin, _, nbands = eig.shape
    if nspin == 1:
        counts = [float(nelect) if noncolin else nelect / 2.0]
    else:
        mag = magnetization if magnetization is not None else float(round(nelect) % 2)
        counts = [(nelect + mag) / 2.0, (nelect - mag) / 2.0]
    if any(abs(c - round(c)) > 1e-4 or round(c) > nbands or c < 0 for c in counts):
        return None
    occ = np.zeros_like(eig)
    order = np.argsort(eig, axis=2)
    for s, c in enumerate(counts):
        ranks = np.argsort(order[s], axis=1)  # rank of each band at each k
        occ[s] = (ranks < round(c)).astype(float)
    return occ


def occupations_from_fermi(eigenvalues: np.ndarray, fermi_eV: Any) -> np.ndarray:
    """1 for states at or below the Fermi level (one level, or one per spin channel), else 0."""
    eig = np.asarray(eigenvalues, dtype=float)
    levels = np.atleast_1d(np.asarray(fermi_eV, dtype=float))
    if levels.size == 1:
        levels = np.repeat(levels, eig.shape[0])
    return (eig <= levels[: eig.shape[0], None, None] + 1e-6).astype(float)


def _edges(e: np.ndarray, f: np.ndarray, k: np.ndarray) -> dict[str, Any]:
    occ = f > OCCUPIED_FRACTION
    vbm = float(e[occ].max()) if occ.any() else None
    cbm = float(e[~occ].min()) if (~occ).any() else None
    partial = bool(((f > PARTIAL[0]) & (f < PARTIAL[1])).any())
    gap = None if vbm is None or cbm is None or partial else cbm - vbm
    if gap is not None and gap < GAP_MIN_EV:
        gap = None
    direct = None
    if gap is not None:
        direct = bool(k[occ][np.argmax(e[occ])] == k[~occ][np.argmin(e[~occ])])
    return {"vbm_eV": vbm, "cbm_eV": None if partial else cbm, "band_gap_eV": gap,
            "is_direct": direct, "n_occupied": int(occ.sum())}  # fmt: skip


def band_edges(
    energies: np.ndarray,
    occupations: np.ndarray,
    spins: np.ndarray | None = None,
    kindex: np.ndarray | None = None,
) -> dict[str, Any]:
    """VBM, CBM and gap over both spin channels, and per channel.

    Parameters
    ----------
    energies, occupations
        Flat per-state arrays (eV; fraction of the maximum occupation, 0..1).
    spins, kindex
        Spin channel (0 up, 1 down) and k-point index of each state (default: all 0).

    Returns
    -------
    ``vbm_eV``, ``cbm_eV``, ``band_gap_eV`` (None if metallic/partly filled or unknown),
    ``is_direct``, ``vbm_spin``/``cbm_spin`` (``up``/``down`` or None) and ``spin``:
    ``{"up": {...}, "down": {...}}`` with the same edges per channel (spin-polarised only).
    """
    e = np.asarray(energies, dtype=float).ravel()
    f = np.asarray(occupations, dtype=float).ravel()
    s = np.zeros(e.size, dtype=int) if spins is None else np.asarray(spins).ravel()
    k = np.zeros(e.size, dtype=int) if kindex is None else np.asarray(kindex).ravel()
    out = _edges(e, f, k)
    channels = sorted(set(s.tolist()))
    out["vbm_spin"] = out["cbm_spin"] = None
    if len(channels) > 1:
        out["spin"] = {SPIN_NAMES[c]: _edges(e[s == c], f[s == c], k[s == c]) for c in channels}
        occ = f > OCCUPIED_FRACTION
        if out["vbm_eV"] is not None:
            out["vbm_spin"] = SPIN_NAMES[int(s[occ][np.argmax(e[occ])])]
        if out["cbm_eV"] is not None:
            out["cbm_spin"] = SPIN_NAMES[int(s[~occ][np.argmin(e[~occ])])]
    return out


def band_edges_grid(eigenvalues: np.ndarray, occupations: np.ndarray) -> dict[str, Any]:
    """:func:`band_edges` for arrays ``[spin][k][band]`` (eV, occupation fractions)."""
    eig = np.asarray(eigenvalues, dtype=float)
    spins, kidx, _ = np.indices(eig.shape)
    return band_edges(eig, occupations, spins, kidx)


def magnetization(occupations: np.ndarray, spins: np.ndarray, kweights: np.ndarray) -> float:
    """Total magnetisation ``n_up - n_down`` (Bohr magnetons per cell) from occupation
    fractions, spin channels and k-point weights (normalised to 1 per channel)."""
    f = np.asarray(occupations, dtype=float)
    w = np.asarray(kweights, dtype=float)
    s = np.asarray(spins)
    return float(np.sum(f * w * np.where(s == 0, 1.0, -1.0)))
