"""Band alignment between domains: per-domain band edges, offsets and the alignment type.

Two routes:

1. **Domain-projected DOS** (one heterostructure calculation, e.g. seed 000/002's
   CsPbBr3 | Cs4PbBr6 or CsPbBr3 | Pb4S3Br2 models): each domain's PDOS (atoms grouped by
   the ``domain`` site property) is broadened; the domain's VBM is the highest energy below
   the gap where its PDOS exceeds ``threshold`` x its maximum over the valence window, the
   CBM the lowest such energy above the gap.
2. **Planar-averaged potential** (periodic interfaces): the macroscopic average of the
   potential across the interface gives the step ``V_A - V_B``; with each bulk's
   ``E_VBM - <V>`` it yields the offsets (:func:`offsets_from_potential`).

Classification (:func:`classify`): type I (one domain's gap inside the other's), type II
(staggered), quasi-type II when one offset is below ``tolerance`` (default 0.1 eV, about
4 kT at room temperature) so that one carrier is shared by both domains, and ``aligned``
when both offsets are below it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perovflow.analysis.pdos import compute_pdos
from perovflow.errors import InputError
from perovflow.projections import StateProjections


@dataclass
class AlignmentResult:
    """Band edges of two domains, their offsets and the alignment type."""

    domains: list[str]
    edges: dict[str, dict[str, float]]
    valence_offset_eV: float
    conduction_offset_eV: float
    alignment: str
    tolerance_eV: float
    method: str
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "domains": self.domains,
            "edges": self.edges,
            "valence_offset_eV": self.valence_offset_eV,
            "conduction_offset_eV": self.conduction_offset_eV,
            "alignment": self.alignment,
            "tolerance_eV": self.tolerance_eV,
            "method": self.method,
            "source": self.source,
        }

    to_dict = summary


def classify(
    vbm_a: float, cbm_a: float, vbm_b: float, cbm_b: float, tolerance: float = 0.1
) -> tuple[str, float, float]:
    """Alignment type of domains A and B from their edges.

    Returns
    -------
    kind, dEv, dEc
        ``type I``, ``type II`` or ``quasi-type II``; offsets ``VBM_A - VBM_B`` and
        ``CBM_A - CBM_B`` (eV).
    """
    if cbm_a <= vbm_a or cbm_b <= vbm_b:
        raise InputError(
            "a domain has no gap (its CBM is not above its VBM)",
            "check the domain groups and the energy window",
        )
    dv = vbm_a - vbm_b
    dc = cbm_a - cbm_b
    if abs(dv) < tolerance or abs(dc) < tolerance:
        if abs(dv) < tolerance and abs(dc) < tolerance:
            return "aligned", dv, dc  # both edges shared: no offset either way
        return "quasi-type II", dv, dc
    if np.sign(dv) != np.sign(dc):
        return "type I", dv, dc  # one gap nested in the other
    return "type II", dv, dc


def _edge(energies: np.ndarray, curve: np.ndarray, mask: np.ndarray, threshold: float, top: bool):
    seg = np.where(mask, curve, 0.0)
    peak = seg.max()
    if peak <= 0:
        return None
    above = np.flatnonzero(mask & (curve >= threshold * peak))
    return float(energies[above.max() if top else above.min()])


def domain_edges(
    proj: StateProjections,
    groups: str | dict[str, list[int]] = "domain",
    threshold: float = 0.05,
    sigma: float = 0.05,
    window: float = 3.0,
) -> dict[str, dict[str, float]]:
    """VBM/CBM of each domain from its projected DOS (absolute energies, eV)."""
    res = compute_pdos(proj, by=groups, sigma=sigma, reference="vbm", window=(-window, window + 6))
    if res.vbm_eV is None or res.cbm_eV is None:
        raise InputError("band edges are unknown (no occupations)", "give the pw.x output too")
    gap_mid = 0.5 * (res.cbm_eV - res.vbm_eV)
    e = res.energies
    val = (e <= gap_mid) & (e >= -window)
    con = (e > gap_mid) & (e <= res.cbm_eV - res.vbm_eV + window)
    edges = {}
    for name, curve in res.curves.items():
        v = _edge(e, curve, val, threshold, top=True)
        c = _edge(e, curve, con, threshold, top=False)
        if v is None or c is None:
            raise InputError(
                f"domain {name!r} has no states within {window} eV of the band edges",
                "widen the window or check the domain assignment",
            )
        edges[name] = {"vbm_eV": v + res.reference_eV, "cbm_eV": c + res.reference_eV}
    return edges


def align_domains(
    proj: StateProjections,
    groups: str | dict[str, list[int]] = "domain",
    pair: tuple[str, str] | None = None,
    threshold: float = 0.05,
    sigma: float = 0.05,
    tolerance: float = 0.1,
) -> AlignmentResult:
    """Band alignment of two domains of one calculation from domain-projected DOS."""
    edges = domain_edges(proj, groups, threshold, sigma)
    names = list(pair) if pair else sorted(edges)[:2]
    if len(names) != 2 or any(n not in edges for n in names):
        raise InputError(
            f"need two domains, found {sorted(edges)}", "tag the two domains or name the pair"
        )
    a, b = (edges[n] for n in names)
    kind, dv, dc = classify(a["vbm_eV"], a["cbm_eV"], b["vbm_eV"], b["cbm_eV"], tolerance)
    return AlignmentResult(
        names,
        edges,
        dv,
        dc,
        kind,
        tolerance,
        "domain PDOS",
        proj.source,
        {"threshold": threshold, "sigma_eV": sigma},
    )


def macroscopic_average(profile: np.ndarray, length: float, period: float) -> np.ndarray:
    """Running average of a periodic planar profile over a window of ``period`` Å."""
    from scipy.ndimage import uniform_filter1d

    n = len(profile)
    width = max(1, round(period / length * n))
    return uniform_filter1d(np.asarray(profile, dtype=float), size=width, mode="wrap")


def offsets_from_potential(
    profile: np.ndarray,
    length: float,
    region_a: tuple[float, float],
    region_b: tuple[float, float],
    bulk_a: dict[str, float],
    bulk_b: dict[str, float],
    period: float | tuple[float, float],
    tolerance: float = 0.1,
    names: tuple[str, str] = ("A", "B"),
) -> AlignmentResult:
    """Offsets across a periodic interface from its planar-averaged potential.

    Parameters
    ----------
    profile
        Planar average of the electrostatic potential along the stacking axis (eV).
    length
        Cell length along that axis (Å).
    region_a, region_b
        Fractional (start, end) of the bulk-like middle of each domain.
    bulk_a, bulk_b
        For each bulk: ``vbm_eV``, ``cbm_eV`` and ``v_avg_eV`` (its mean potential).
    period
        Bulk repeat length(s) along the axis for the macroscopic average (Å).
    """
    periods = (period, period) if isinstance(period, int | float) else period
    x = np.linspace(0, 1, len(profile), endpoint=False)
    levels = []
    for (lo, hi), per in zip((region_a, region_b), periods, strict=True):
        mask = (x >= lo) & (x <= hi)
        if not mask.any():
            raise InputError(f"region ({lo}, {hi}) holds no grid point", "widen the region")
        levels.append(float(macroscopic_average(profile, length, per)[mask].mean()))
    step = levels[0] - levels[1]
    edges = {}
    for name, bulk, level in zip(names, (bulk_a, bulk_b), levels, strict=True):
        edges[name] = {
            "vbm_eV": bulk["vbm_eV"] - bulk["v_avg_eV"] + level,
            "cbm_eV": bulk["cbm_eV"] - bulk["v_avg_eV"] + level,
        }
    a, b = edges[names[0]], edges[names[1]]
    kind, dv, dc = classify(a["vbm_eV"], a["cbm_eV"], b["vbm_eV"], b["cbm_eV"], tolerance)
    return AlignmentResult(
        list(names),
        edges,
        dv,
        dc,
        kind,
        tolerance,
        "planar potential",
        "",
        {"potential_step_eV": step},
    )
