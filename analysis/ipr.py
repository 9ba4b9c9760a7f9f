"""Inverse participation ratio (IPR) of Kohn–Sham states or molecular orbitals.

Definition (seed 002, the user's card)::

    IPR_i = sum_a |P_ai|^4 / (sum_a |P_ai|^2)^2

with ``P_ai`` the weight of state ``i`` on atom ``a``. It ranges from 1/N (a state spread
evenly over N atoms) to 1 (a state on one atom). States above ``threshold`` are flagged
as localized. The default is size-aware, ``max(0.03, 3/N)`` (capped at 0.5): the seed's 0.03 for its
thousands-of-atom models, but never below a few times the delocalized limit 1/N, which in a
small test cell (N = 21: 1/N = 0.048) would flag every state. An explicit threshold wins. For k-point calculations the IPR is computed
per (k, band) state; :attr:`IPRResult.band_ipr` averages it over k with the k-weights.

Everything is vectorised over states and computed in row chunks, so the extra memory stays a
small fraction of the projection array (float32 arrays stay float32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perovflow.analysis.groups import group_matrix, resolve_groups
from perovflow.analysis.projections import StateProjections
from perovflow.errors import InputError

DEFAULT_THRESHOLD = 0.03  # seed 002
DELOCALIZED_FACTOR = 3.0  # automatic threshold is at least this many times 1/N


def default_threshold(natoms: int) -> float:
    """The automatic localization threshold ``max(0.03, 3/N)`` (at most 0.5) for ``natoms`` atoms."""
    return min(0.5, max(DEFAULT_THRESHOLD, DELOCALIZED_FACTOR / max(natoms, 1)))


#: Elements per row chunk (float32: 16 MB of temporaries at most).
CHUNK_ELEMENTS = 4_000_000


def ipr_values(weights: np.ndarray, chunk_elements: int = CHUNK_ELEMENTS) -> np.ndarray:
    """IPR of every row of ``weights`` (nstates, natoms): ``sum p^2 / (sum p)^2``, p = |w|.

    Rows of zeros give NaN. Non-negative weights (probabilities, the usual case) are
    contracted in place by two ``einsum`` reductions (SIMD, accumulated in the array's
    float type: ~1e-6 relative in float32), so no temporary of the array's size is made.
    Weights with negative entries (Mulliken-type populations) go through one reused
    ``|w|`` buffer of ``chunk_elements``.
    """
    weights = np.asarray(weights)
    if weights.ndim != 2:
        raise InputError(f"weights must be 2-D, got shape {weights.shape}", "pass (states, atoms)")
    nstates, natoms = weights.shape
    if not weights.size or weights.min() >= 0:
        num = np.einsum("ij,ij->i", weights, weights).astype(np.float64)
        den = np.einsum("ij->i", weights).astype(np.float64)
    else:
        num, den = np.empty(nstates), np.empty(nstates)
        rows = max(1, chunk_elements // max(natoms, 1))
        buf = np.empty((min(rows, nstates), natoms), dtype=weights.dtype)
        for start in range(0, nstates, rows):
            block = weights[start : start + rows]
            block = np.abs(block, out=buf[: block.shape[0]])
            num[start : start + rows] = np.einsum("ij,ij->i", block, block)
            den[start : start + rows] = np.einsum("ij->i", block)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / (den * den)


def band_edges(proj: StateProjections) -> tuple[float | None, float | None]:
    """VBM (highest occupied) and CBM (lowest empty) energies, from occupations or E_F."""
    e = proj.energies
    if proj.occupations is not None:
        occ = np.asarray(proj.occupations) > 0.5
    elif proj.fermi_eV is not None:
        occ = e <= proj.fermi_eV + 1e-6
    else:
        return None, None
    vbm = float(e[occ].max()) if occ.any() else None
    cbm = float(e[~occ].min()) if (~occ).any() else None
    return vbm, cbm


@dataclass
class IPRResult:
    """IPR of every state, the localized ones and their carriers.

    Attributes
    ----------
    energies, ipr, localized
        Per state (eV, IPR, flag).
    threshold
        IPR above which a state counts as localized.
    vbm_eV, cbm_eV
        Band edges from occupations (None if unknown).
    edges_delocalized
        VBM/CBM counted over delocalized states only (seed 002's "extrapolated" edges).
    group_names, group_shares
        Atom groups and each state's share on them (nstates, ngroups).
    band_ipr
        k-weighted IPR per (spin, band), for k-point calculations.
    states
        One dict per state for JSON output (energy_eV, ipr, localized, top_atoms, ...).
    """

    energies: np.ndarray
    ipr: np.ndarray
    localized: np.ndarray
    threshold: float
    vbm_eV: float | None
    cbm_eV: float | None
    edges_delocalized: dict[str, float | None]
    group_names: list[str]
    group_shares: np.ndarray
    band_ipr: list[dict[str, Any]]
    states: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""

    @property
    def localized_states(self) -> list[dict[str, Any]]:
        """The state dicts flagged localized."""
        return [s for s in self.states if s["localized"]]

    def summary(self) -> dict[str, Any]:
        """Small dict: counts, edges and the localized states."""
        return {
            "nstates": len(self.energies),
            "threshold": self.threshold,
            "n_localized": int(self.localized.sum()),
            "vbm_eV": self.vbm_eV,
            "cbm_eV": self.cbm_eV,
            "gap_eV": None
            if self.vbm_eV is None or self.cbm_eV is None
            else self.cbm_eV - self.vbm_eV,
            "edges_delocalized": self.edges_delocalized,
            "localized_states": self.localized_states,
            "source": self.source,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (``states`` lists every state)."""
        out = self.summary()
        out.update({"groups": self.group_names, "states": self.states, "band_ipr": self.band_ipr})
        return out


def top_atoms(
    weights: np.ndarray, n: int = 3, chunk_elements: int = CHUNK_ELEMENTS
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (nstates, n) of the atoms carrying most weight, and their weight fractions."""
    nstates, natoms = weights.shape
    n = min(n, natoms)
    idx = np.empty((nstates, n), dtype=np.int64)
    frac = np.empty((nstates, n), dtype=np.float64)
    rows = max(1, chunk_elements // max(natoms, 1))
    for start in range(0, nstates, rows):
        block = np.abs(weights[start : start + rows])
        part = np.argpartition(block, natoms - n, axis=1)[:, natoms - n :]
        vals = np.take_along_axis(block, part, axis=1)
        order = np.argsort(-vals, axis=1)
        part = np.take_along_axis(part, order, axis=1)
        total = block.sum(axis=1, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac[start : start + rows] = np.take_along_axis(vals, order, axis=1) / total[:, None]
        idx[start : start + rows] = part
    return idx, frac


def analyze_ipr(
    proj: StateProjections,
    threshold: float | None = None,
    groups: str | dict[str, list[int]] | None = None,
    top: int = 3,
    energy_window: tuple[float, float] | None = None,
) -> IPRResult:
    """IPR of every state, flags and carriers of the localized ones.

    Parameters
    ----------
    proj
        Projections from any code (QE projwfc, CP2K MOs).
    threshold
        States with IPR above it are localized. None (default) uses
        :func:`default_threshold`, ``max(0.03, 3/N)``; seed 002 used 0.03 on >2,000 atoms.
    groups
        Atom groups for the colour shares: ``element`` (default), ``domain``,
        ``prop:<site property>`` or a dict name -> atom indices.
    top
        How many top-weight atoms to report per state.
    energy_window
        Keep only states with ``lo <= E - VBM <= hi`` (eV); an empty window is an error.
    """
    if threshold is None:
        threshold = default_threshold(proj.natoms)
    if not 0 < threshold <= 1:
        raise InputError(f"IPR threshold {threshold} is outside (0, 1]", "use e.g. 0.03")
    vbm, cbm = band_edges(proj)
    keep = _window_mask(proj, energy_window, vbm)
    w = proj.weights if keep is None else proj.weights[keep]
    energies = proj.energies if keep is None else proj.energies[keep]
    values = ipr_values(w)
    loc = values > threshold
    grp = resolve_groups(groups, proj)
    mat = group_matrix(grp, proj.natoms, dtype=w.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = (w @ mat).astype(np.float64) / w.sum(axis=1, dtype=np.float64)[:, None]
    tidx, tfrac = top_atoms(w, top)
    sel = np.arange(proj.nstates) if keep is None else np.flatnonzero(keep)
    states = _state_dicts(
        proj, sel, energies, values, loc, shares, list(grp), tidx, tfrac, vbm, cbm
    )
    return IPRResult(
        energies=energies,
        ipr=values,
        localized=loc,
        threshold=threshold,
        vbm_eV=vbm,
        cbm_eV=cbm,
        edges_delocalized=_delocalized_edges(proj, sel, values, threshold),
        group_names=list(grp),
        group_shares=shares,
        band_ipr=_band_ipr(proj, sel, values),
        states=states,
        source=proj.source,
    )


def _window_mask(
    proj: StateProjections, window: tuple[float, float] | None, vbm: float | None
) -> np.ndarray | None:
    if window is None:
        return None
    ref = vbm if vbm is not None else (proj.fermi_eV or 0.0)
    lo, hi = sorted(window)
    mask = (proj.energies - ref >= lo) & (proj.energies - ref <= hi)
    if not mask.any():
        raise InputError(
            f"no state in the energy window [{lo:g}, {hi:g}] eV relative to the VBM "
            f"(states span {proj.energies.min() - ref:.2f} to {proj.energies.max() - ref:.2f} eV)",
            "widen the window",
        )
    return mask


def _state_dicts(proj, sel, energies, values, loc, shares, names, tidx, tfrac, vbm, cbm):
    species = proj.species
    band = np.asarray(proj.kindex)[sel]
    out = []
    nbnd = proj.meta.get("nbnd")
    occ = None if proj.occupations is None else np.asarray(proj.occupations)[sel]
    for j, i in enumerate(sel.tolist()):
        out.append(
            {
                "state": i,
                "k": int(band[j]),
                "spin": int(proj.spins[i]),
                "band": int(i % nbnd) + 1 if nbnd else None,
                "energy_eV": float(energies[j]),
                "e_minus_vbm_eV": None if vbm is None else float(energies[j] - vbm),
                "e_minus_cbm_eV": None if cbm is None else float(energies[j] - cbm),
                "occupation": None if occ is None else float(occ[j]),
                "ipr": float(values[j]),
                "localized": bool(loc[j]),
                "shares": {n: round(float(shares[j, g]), 4) for g, n in enumerate(names)},
                "top_atoms": [
                    {"index": int(a), "element": species[a], "fraction": round(float(f), 4)}
                    for a, f in zip(tidx[j], tfrac[j], strict=True)
                ],
            }
        )
    return out


def _delocalized_edges(proj, sel, values, threshold) -> dict[str, float | None]:
    """Band edges counted over delocalized states only (seed 002 uses IPR < 0.03)."""
    if proj.occupations is None:
        return {"vbm_eV": None, "cbm_eV": None}
    occ = np.asarray(proj.occupations)[sel] > 0.5
    e = proj.energies[sel]
    deloc = values <= threshold
    v = e[occ & deloc]
    c = e[~occ & deloc]
    return {
        "vbm_eV": float(v.max()) if v.size else None,
        "cbm_eV": float(c.min()) if c.size else None,
    }


def _band_ipr(proj, sel, values) -> list[dict[str, Any]]:
    """k-weighted IPR per (spin, band) when there are several k-points."""
    nbnd = proj.meta.get("nbnd")
    kidx = np.asarray(proj.kindex)[sel]
    if not nbnd or len(np.unique(kidx)) < 2:
        return []
    band = sel % nbnd
    spin = np.asarray(proj.spins)[sel]
    kw = np.asarray(proj.kweights, dtype=float)[sel]
    key = spin * nbnd + band
    wsum = np.bincount(key, weights=kw)
    ipr_avg = np.bincount(key, weights=kw * values) / np.where(wsum > 0, wsum, 1)
    e_avg = np.bincount(key, weights=kw * proj.energies[sel]) / np.where(wsum > 0, wsum, 1)
    return [
        {
            "spin": int(k // nbnd),
            "band": int(k % nbnd) + 1,
            "energy_eV": float(e_avg[k]),
            "ipr": float(ipr_avg[k]),
        }
        for k in np.flatnonzero(wsum > 0)
    ]


def plot_ipr(result: IPRResult, path: str | Path, reference: str = "vbm") -> Path:
    """Energy vs IPR, each state coloured by its largest atom-group share (seed figure)."""
    from perovflow.analysis.plots import new_figure, save_figure

    ref = result.vbm_eV if reference == "vbm" and result.vbm_eV is not None else 0.0
    fig, ax = new_figure(4.5, 5.0)
    dominant = np.nan_to_num(result.group_shares).argmax(axis=1)
    for g, name in enumerate(result.group_names):
        m = dominant == g
        if m.any():
            ax.scatter(result.ipr[m], result.energies[m] - ref, s=10, label=name)
    ax.axvline(result.threshold, color="grey", ls="--", lw=0.8, label=f"IPR={result.threshold:g}")
    if result.cbm_eV is not None and result.vbm_eV is not None:
        ax.axhline(result.cbm_eV - ref, color="k", lw=0.5, ls=":")
        ax.axhline(result.vbm_eV - ref, color="k", lw=0.5, ls=":")
    ax.set_xlabel("IPR")
    ax.set_ylabel("E - VBM (eV)" if ref else "E (eV)")
    ax.legend(fontsize=7, title="largest share")
    return save_figure(fig, path)
