"""Inverse participation ratio (IPR) of Kohn–Sham states or molecular orbitals.

Convention (seed 002, the user's card)::

    IPR_i = sum_a |P_ai|^4 / (sum_a |P_ai|^2)^2 = sum_a p_ai^2 / (sum_a p_ai)^2

with ``p_ai = |P_ai|^2`` the weight of state ``i`` on atom ``a`` as the codes give it: QE
projwfc.x's |<phi|psi>|^2 summed over the atom's orbitals, CP2K's ``&LDOS`` MO weight. These
are probabilities, so they are squared once. For every state
``max_a(p/sum p)^2 <= IPR <= max_a p/sum p``; a state spread evenly over N atoms has
IPR = 1/N, a state on one atom 1. The participation number ``1/IPR`` is the number of
atoms carrying the state.

States above ``threshold`` are flagged localized. The default is size-aware,
``max(0.03, 8/N)`` (at most 0.5), i.e. a state is localized when fewer than N/8 atoms (and
fewer than 33) carry it. Why: a host band state is carried by a fixed fraction f of the
cell's atoms, so its IPR is 1/(f N), while a defect level keeps a few atoms at any size.
Measured on the stored QE runs (``tests/data/analysis/qe``): CsPbBr3 valence band f = 0.8,
conduction band (Pb 6p) f = 0.26; 0D Cs4PbBr6 valence band f = 0.5-0.7, conduction band
f = 0.17 (IPR 0.26-0.28 in the 22-atom cell); the Br vacancy level of the 21-atom cell
carries 1.9 atoms (IPR 0.54). A factor 8 > 1/0.17 keeps every host band state below the
threshold with a margin; the seed's 0.03 (its >2,000-atom models) takes over from
N = 267 atoms. An explicit threshold wins. For k-point calculations the IPR is computed
per (k, band, spin) state; :attr:`IPRResult.band_ipr` averages it over k with the
k-weights, per spin channel.

Band edges and occupations follow the one rule of :mod:`perovflow.electronic`, per spin.
Everything is vectorised over states and computed in row chunks, so the extra memory stays a
small fraction of the projection array (float32 arrays stay float32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perovflow.analysis.groups import group_matrix, resolve_groups
from perovflow.errors import InputError
from perovflow.projections import StateProjections

DEFAULT_THRESHOLD = 0.03  # seed 002
DELOCALIZED_FACTOR = 8.0  # automatic threshold: at least this many times 1/N (see above)


def default_threshold(natoms: int) -> float:
    """The automatic localization threshold ``max(0.03, 8/N)`` (at most 0.5) for ``natoms`` atoms."""
    return min(0.5, max(DEFAULT_THRESHOLD, DELOCALIZED_FACTOR / max(natoms, 1)))


#: Elements per row chunk (float32: 16 MB of temporaries at most).
CHUNK_ELEMENTS = 4_000_000


def ipr_values(weights: np.ndarray, chunk_elements: int = CHUNK_ELEMENTS) -> np.ndarray:
    """IPR ``sum_a p_a^2 / (sum_a p_a)^2`` of every row of ``weights`` (nstates, natoms).

    The rows are probabilities ``p_ai = |P_ai|^2`` (see the module docstring), so they are
    squared once, not twice. Rows of zeros give NaN. Non-negative weights (the usual case)
    are contracted in place by two ``einsum`` reductions (accumulated in the array's float
    type: ~1e-6 relative in float32); weights with negative entries (Mulliken-type
    populations) go through one reused ``|w|`` buffer.
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


def state_occupations(proj: StateProjections) -> np.ndarray | None:
    """Occupation fraction of every state: the code's, else from the Fermi level, else None."""
    from perovflow.electronic import occupations_from_fermi

    if proj.occupations is not None:
        return np.asarray(proj.occupations, dtype=float)
    if proj.fermi_eV is None:
        return None
    return occupations_from_fermi(proj.energies[None, None, :], proj.fermi_eV).ravel()


def projection_edges(proj: StateProjections) -> dict[str, Any]:
    """Band edges of the projected states by the shared rule (:mod:`perovflow.electronic`),
    over both spin channels and per channel; ``{}`` when occupations are unknown."""
    from perovflow.electronic import band_edges as shared_edges

    occ = state_occupations(proj)
    if occ is None:
        return {}
    return shared_edges(proj.energies, occ, proj.spins, proj.kindex)


def band_edges(proj: StateProjections) -> tuple[float | None, float | None]:
    """VBM (highest occupied) and CBM (lowest empty) over both spins (shared rule)."""
    edges = projection_edges(proj)
    return edges.get("vbm_eV"), edges.get("cbm_eV")


@dataclass
class IPRResult:
    """IPR of every state, the localized ones and their carriers.

    Attributes
    ----------
    energies, ipr, localized
        Per state (eV, IPR, flag).
    participation
        Per state ``1/IPR``: the number of atoms carrying it.
    spins, occupations
        Per state spin channel (0 up, 1 down) and occupation fraction (None if unknown).
    threshold
        IPR above which a state counts as localized.
    vbm_eV, cbm_eV
        Band edges from occupations over both spins (None if unknown).
    edges
        The shared rule's full answer (:func:`perovflow.electronic.band_edges`): gap,
        directness and the edges of each spin channel.
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
    edges: dict[str, Any]
    spins: np.ndarray
    occupations: np.ndarray | None
    edges_delocalized: dict[str, float | None]
    group_names: list[str]
    group_shares: np.ndarray
    band_ipr: list[dict[str, Any]]
    states: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""

    @property
    def participation(self) -> np.ndarray:
        """``1/IPR`` of every state: how many atoms carry it (1 to N)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 / self.ipr

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
            "convention": "IPR = sum_a p_a^2 / (sum_a p_a)^2, p_a = |P_a|^2; participation = 1/IPR",
            "spin_polarized": bool(self.edges.get("spin")),
            "vbm_eV": self.vbm_eV,
            "cbm_eV": self.cbm_eV,
            "cell_gap_eV": self.edges.get("band_gap_eV"),
            "spin_edges": self.edges.get("spin"),
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
        :func:`default_threshold`, ``max(0.03, 8/N)``; seed 002 used 0.03 on >2,000 atoms.
    groups
        Atom groups for the colour shares: ``element`` (default), ``domain``,
        ``prop:<site property>`` or a dict name -> atom indices.
    top
        How many top-weight atoms to report per state.
    energy_window
        Keep only states with ``lo <= E - VBM <= hi`` (eV); an empty window is an error.
    """
    threshold = _threshold(threshold, proj.natoms)
    edges = projection_edges(proj)
    vbm, cbm = edges.get("vbm_eV"), edges.get("cbm_eV")
    occ_all = state_occupations(proj)
    keep = _window_mask(proj, energy_window, vbm)
    w = proj.weights if keep is None else proj.weights[keep]
    energies = proj.energies if keep is None else proj.energies[keep]
    values = ipr_values(w)
    loc = values > threshold
    grp = resolve_groups(groups, proj)
    shares = _group_shares(w, group_matrix(grp, proj.natoms, dtype=w.dtype))
    tidx, tfrac = top_atoms(w, top)
    sel = np.arange(proj.nstates) if keep is None else np.flatnonzero(keep)
    occ = None if occ_all is None else occ_all[sel]
    states = _state_dicts(
        proj, sel, energies, values, loc, shares, list(grp), tidx, tfrac, vbm, cbm, occ
    )
    return IPRResult(
        energies=energies,
        ipr=values,
        localized=loc,
        threshold=threshold,
        vbm_eV=vbm,
        cbm_eV=cbm,
        edges=edges,
        spins=np.asarray(proj.spins)[sel],
        occupations=occ,
        edges_delocalized=_delocalized_edges(proj, sel, values, threshold, occ),
        group_names=list(grp),
        group_shares=shares,
        band_ipr=_band_ipr(proj, sel, values),
        states=states,
        source=proj.source,
    )


def _threshold(threshold: float | None, natoms: int) -> float:
    """The user's IPR threshold, else :func:`default_threshold`; it must lie in (0, 1]."""
    if threshold is None:
        threshold = default_threshold(natoms)
    if not 0 < threshold <= 1:
        raise InputError(f"IPR threshold {threshold} is outside (0, 1]", "use e.g. 0.03")
    return threshold


def _group_shares(w: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """Share of each state's weight on each atom group (NaN for a state without weight)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ mat).astype(np.float64) / w.sum(axis=1, dtype=np.float64)[:, None]


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


def _state_dicts(proj, sel, energies, values, loc, shares, names, tidx, tfrac, vbm, cbm, occ):
    species = proj.species
    band = np.asarray(proj.kindex)[sel]
    out = []
    nbnd = proj.meta.get("nbnd")
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
                "participation": float(1.0 / values[j]) if values[j] > 0 else None,
                "localized": bool(loc[j]),
                "shares": {n: round(float(shares[j, g]), 4) for g, n in enumerate(names)},
                "top_atoms": [
                    {"index": int(a), "element": species[a], "fraction": round(float(f), 4)}
                    for a, f in zip(tidx[j], tfrac[j], strict=True)
                ],
            }
        )
    return out


def _delocalized_edges(proj, sel, values, threshold, occ) -> dict[str, float | None]:
    """Band edges counted over delocalized states only (seed 002 uses IPR < 0.03): the host
    band edges of a defect cell, its localized levels left out (shared occupation rule)."""
    from perovflow.electronic import band_edges as shared_edges

    deloc = values <= threshold
    if occ is None or not deloc.any():
        return {"vbm_eV": None, "cbm_eV": None}
    spins = np.asarray(proj.spins)[sel][deloc]
    edges = shared_edges(proj.energies[sel][deloc], occ[deloc], spins)
    return {"vbm_eV": edges["vbm_eV"], "cbm_eV": edges["cbm_eV"]}


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
