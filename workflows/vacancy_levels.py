"""Kohn–Sham levels and IPR of the vacancy cells (the per-cell part of the vacancy report).

Occupations follow :mod:`perovflow.electronic`; the IPR analysis is
:mod:`perovflow.analysis.ipr`.
"""

from __future__ import annotations

from typing import Any

from perovflow.electronic import SPIN_NAMES


def _gap_states(defect: dict | None) -> list[dict[str, Any]]:
    """Localized states strictly between the defect cell's delocalized band edges (levels)."""
    if not defect:
        return []
    edges = defect.get("edges_delocalized") or {}
    vbm, cbm = edges.get("vbm_eV"), edges.get("cbm_eV")
    if vbm is None or cbm is None:
        return []
    return [
        {"energy_above_vbm_eV": round(st["energy_eV"] - vbm, 4), "ipr": round(st["ipr"], 4),
         "spin": SPIN_NAMES[st.get("spin") or 0], "occupation": st.get("occupation"),
         "top_atoms": st.get("top_atoms", [])[:2]}
        for st in defect.get("localized_states", [])
        if vbm < st["energy_eV"] < cbm
    ]  # fmt: skip


def _occupied(state: dict[str, Any]) -> bool:
    from perovflow.electronic import OCCUPIED_FRACTION

    return (state.get("occupation") or 0) > OCCUPIED_FRACTION


def defect_level(states: list[dict[str, Any]], split_eV: float = 0.5) -> dict[str, Any]:
    """The highest occupied state (the level), the host edges around it and, spin-polarised,
    its empty partner in the other spin channel.

    In a 0D host (Cs4PbBr6) every state is molecule-like and has a high IPR, so an IPR
    threshold cannot tell the vacancy level apart; its position can. The host VBM is the
    next occupied state below the level (either spin), the host CBM the lowest empty state
    of the level's own spin channel. Spin-polarised, its partner is the lowest empty state
    of the other channel on the same main atom (``partner_in_gap`` when below the host
    CBM). The level is mid-gap when it sits more than ``split_eV`` above the host VBM
    and below the host CBM. Occupations follow :mod:`perovflow.electronic`.
    """
    occ = sorted((s for s in states if _occupied(s)), key=lambda s: s["energy_eV"])
    empty = [s for s in states if not _occupied(s)]
    if len(occ) < 2 or not empty:
        return {"midgap_level": None}
    top, host_vbm = occ[-1], occ[-2]["energy_eV"]
    spin = top.get("spin") or 0
    own = [s["energy_eV"] for s in empty if (s.get("spin") or 0) == spin]
    host_cbm = min(own) if own else min(s["energy_eV"] for s in empty)
    lowest_empty = min(s["energy_eV"] for s in empty)
    polarized = any((s.get("spin") or 0) == 1 for s in states)
    out = {
        "midgap_level": bool(
            top["energy_eV"] - host_vbm > split_eV and host_cbm - top["energy_eV"] > 0.05
        ),
        "level_spin": SPIN_NAMES[spin] if polarized else None,
        "level_above_vbm_eV": round(top["energy_eV"] - host_vbm, 3),
        "level_below_cbm_eV": round(host_cbm - top["energy_eV"], 3),
        "host_gap_eV": round(host_cbm - host_vbm, 3),
        "host_vbm_eV": round(host_vbm, 4),
        "defect_cell_gap_eV": round(lowest_empty - top["energy_eV"], 3),
        **_level_facts("level", top),
    }
    other = [s for s in empty if (s.get("spin") or 0) != spin]
    if polarized and other:
        low = _partner(top, other)
        out["partner_above_vbm_eV"] = round(low["energy_eV"] - host_vbm, 3)
        out["partner_in_gap"] = bool(low["energy_eV"] < host_cbm)
        out.update(_level_facts("partner", low))
    return out


def _partner(level: dict[str, Any], other: list[dict[str, Any]]) -> dict[str, Any]:
    """The empty state of the other spin channel on the level's main atom (lowest first)."""
    atom = (level.get("top_atoms") or [{}])[0].get("index")
    same = [s for s in other if (s.get("top_atoms") or [{}])[0].get("index") == atom]
    return min(same or other, key=lambda s: s["energy_eV"])


def _level_facts(prefix: str, state: dict[str, Any]) -> dict[str, Any]:
    return {
        f"{prefix}_occupation": state.get("occupation"),
        f"{prefix}_ipr": round(state["ipr"], 3),
        f"{prefix}_participation": None
        if not state.get("participation")
        else round(state["participation"], 2),
        f"{prefix}_atoms": [
            f"{a['element']}{a['index']} {a['fraction']:.2f}" for a in state["top_atoms"][:2]
        ],
    }


def edge_ipr(summary: dict | None, states: list[dict] | None = None) -> float | None:
    """Largest IPR among the band-edge states (within 0.1 eV of VBM or CBM)."""
    if not summary or summary.get("vbm_eV") is None:
        return None
    vbm, cbm = summary["vbm_eV"], summary.get("cbm_eV") or summary["vbm_eV"]
    near = [
        s["ipr"]
        for s in states or []
        if min(abs(s["energy_eV"] - vbm), abs(s["energy_eV"] - cbm)) < 0.1
    ]
    return max(near) if near else None


def projections_of(doc: dict | None, static: dict | None = None) -> Any:
    """StateProjections of a task document; when the projection run carried no occupations
    (nscf + projwfc without the pw.x output), they are filled by the shared rule: integer
    filling per spin from the electron count and the scf's magnetisation, else the Fermi
    level (:mod:`perovflow.electronic`)."""
    if not doc or not doc.get("projections"):
        return None

    from perovflow.projections import StateProjections

    proj = StateProjections.from_dict(doc["projections"])
    if proj.occupations is None:
        elec = (static or {}).get("electronic") or doc.get("electronic") or {}
        proj.occupations = _filled(proj, elec)
        if proj.fermi_eV is None:
            proj.fermi_eV = elec.get("fermi_eV")
    return proj


def _filled(proj: Any, elec: dict[str, Any]) -> Any:
    import numpy as np

    from perovflow.electronic import occupations_from_count, occupations_from_fermi

    nbnd, nelect = proj.meta.get("nbnd"), elec.get("nelect") or proj.meta.get("nelec")
    mag = elec.get("total_magnetization")
    nspin = int(np.max(proj.spins)) + 1
    if nbnd and nelect is not None and proj.nstates % (nspin * nbnd) == 0:
        eig = proj.energies.reshape(nspin, -1, nbnd)
        occ = occupations_from_count(eig, nelect, None if mag is None else round(mag))
        if occ is not None:
            return occ.ravel()
    fermi = proj.fermi_eV if proj.fermi_eV is not None else elec.get("fermi_eV")
    if fermi is None:
        return None
    return occupations_from_fermi(proj.energies[None, None, :], fermi).ravel()


def _ipr(
    doc: dict | None, threshold: float | None, static: dict | None = None
) -> tuple[dict | None, list[dict] | None]:
    proj = projections_of(doc, static)
    if proj is None:
        return None, None
    from perovflow.analysis.ipr import analyze_ipr

    result = analyze_ipr(proj, threshold=threshold)
    return result.summary(), result.states
