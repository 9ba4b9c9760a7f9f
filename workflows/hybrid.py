"""The study step "hybrid static on the PBE geometry": band edges and defect levels (HSE+SOC).

A study's ``hybrid`` option (``vacancy.hybrid: {xc: hse06, soc: true}``; also ``nqx``,
``ecutfock_eV``) adds, for the bulk supercell and every defect cell, after its PBE static on
the relaxed PBE geometry:

1. when the hybrid's ``soc`` differs from the PBE static's, a PBE static with that ``soc``
   (wavefunctions of another spinor layout cannot be read back by pw.x);
2. the hybrid static, restarted from that PBE static's wavefunctions and density
   (``prev_dir``; :mod:`perovflow.engines.qe.hybrid`), projected by projwfc.x on its own k
   grid (pw.x 6.7 has no non-scf hybrid, so no separate nscf/DOS step).

Levels and IPR of the hybrid cells are reported beside the PBE values
(:func:`hybrid_report`). :func:`spinor_level` locates a level also when it is a half-filled
Kramers pair (non-magnetic spin–orbit run of an odd electron count).
"""

from __future__ import annotations

from typing import Any

from jobflow import job

from perovflow.errors import InputError
from perovflow.workflows.common import run_maker, with_fields

HYBRID_KEYS = ("xc", "soc", "nqx", "ecutfock_eV")
FILLED, EMPTY = 0.75, 0.25  # fraction of a state's maximum occupation
PARTNER_WEIGHT = 0.3  # a level and its empty partner: this much weight on one atom, each


def hybrid_maker(static_maker: Any, spec: dict[str, Any]) -> Any:
    """The hybrid static: a copy of the (QE) PBE ``static_maker`` with the ``spec`` fields.

    Raises
    ------
    InputError
        A key outside :data:`HYBRID_KEYS`, a non-hybrid ``xc`` or a maker without hybrids.
    """
    unknown = sorted(set(spec) - set(HYBRID_KEYS))
    if unknown:
        raise InputError(
            f"unknown hybrid option(s) {', '.join(unknown)}", f"use {', '.join(HYBRID_KEYS)}"
        )
    if str(spec.get("xc", "hse06")).lower() not in ("hse06", "pbe0"):
        raise InputError(f"hybrid xc '{spec.get('xc')}' is not a hybrid", "use hse06 or pbe0")
    if static_maker is None or not hasattr(static_maker, "exx_restart"):
        raise InputError(
            "the hybrid step needs a QE static maker", "use code: qe for the study's statics"
        )
    return with_fields(static_maker, **{"xc": "hse06", **spec, "projwfc": True})


def hybrid_chain(
    structure: Any,
    pbe_static: Any,
    static_maker: Any,
    spec: dict[str, Any],
    name: str,
    labels: dict[str, Any],
    **fields: Any,
) -> tuple[list, Any]:
    """Jobs of the hybrid step for one cell (see the module docstring); returns (jobs, the
    hybrid static job). ``pbe_static`` is the cell's PBE static job (its folder is the start)."""
    hyb = hybrid_maker(static_maker, spec)
    jobs = []
    start = pbe_static
    if "soc" in spec and bool(spec["soc"]) != bool(getattr(static_maker, "soc", None)):
        start = run_maker(
            with_fields(static_maker, soc=bool(spec["soc"])), structure,
            f"{name} pbe static (soc={bool(spec['soc'])})", labels, **fields,
        )  # fmt: skip
        jobs.append(start)
    hybrid = run_maker(
        hyb, structure, f"{name} {hyb.xc} static", labels, prev_dir=start.output.dir_name, **fields
    )
    return [*jobs, hybrid], hybrid


def spinor_level(states: list[dict[str, Any]], split_eV: float = 0.5) -> dict[str, Any]:
    """The level of a defect cell and the host edges around it, from IPR state dicts.

    Occupations are fractions of a state's maximum (0..1). The level is the highest state
    more than a quarter filled (a half-filled Kramers pair of a non-magnetic SOC run counts,
    as does the occupied level of a spin-polarised run); the host VBM the highest state
    more than three quarters filled below it, the host CBM the lowest state less than a
    quarter filled above it that is not the level's empty partner. The partner is the
    lowest empty state above the level when it is as localised on the level's main atom
    (a Kramers pair split by exact exchange, or the empty spin of a polarised level); it is
    reported apart (``partner_above_level_eV``). Mid-gap: more than ``split_eV`` above the
    host VBM.
    """
    ordered = sorted(states, key=lambda s: s["energy_eV"])
    occ = [s for s in ordered if (s.get("occupation") or 0) > EMPTY]
    if not occ:
        return {"midgap_level": None}
    level = occ[-1]
    below = [s for s in occ if (s.get("occupation") or 0) > FILLED and s is not level]
    below = [s for s in below if s["energy_eV"] < level["energy_eV"] - 1e-6]
    above = [s for s in ordered if (s.get("occupation") or 0) < EMPTY]
    above = [s for s in above if s["energy_eV"] > level["energy_eV"] + 1e-6]
    partner = above[0] if above and _partner(level, above[0]) else None
    above = [s for s in above if s is not partner]
    if not below or not above:
        return {"midgap_level": None}
    vbm, cbm = below[-1]["energy_eV"], above[0]["energy_eV"]
    e = level["energy_eV"]
    return {
        "partner_above_level_eV": None if partner is None else round(partner["energy_eV"] - e, 3),
        "midgap_level": bool(e - vbm > split_eV and cbm - e > 0.05),
        "level_above_vbm_eV": round(e - vbm, 3),
        "level_below_cbm_eV": round(cbm - e, 3),
        "host_gap_eV": round(cbm - vbm, 3),
        "level_occupation": level.get("occupation"),
        "level_ipr": round(level["ipr"], 3),
        "level_atoms": [
            f"{a['element']}{a['index']} {a['fraction']:.2f}" for a in level["top_atoms"][:2]
        ],
    }


def cell_summary(doc: Any) -> dict[str, Any]:
    """Gap, band edges, level and IPR of one task document with projections."""
    from perovflow.analysis.ipr import analyze_ipr
    from perovflow.workflows.vacancy import projections_of

    data = doc.model_dump() if hasattr(doc, "model_dump") else dict(doc or {})
    elec = data.get("electronic") or {}
    out = {"band_gap_eV": elec.get("band_gap_eV"), "vbm_eV": elec.get("vbm_eV"),
           "cbm_eV": elec.get("cbm_eV"), "dir_name": data.get("dir_name")}  # fmt: skip
    proj = projections_of(data, data)
    if proj is not None:
        out.update(spinor_level(analyze_ipr(proj).states))
    return out


def _partner(level: dict[str, Any], state: dict[str, Any]) -> bool:
    """Whether ``state`` is localised like ``level`` on the same main atom (its partner):
    both hold more than :data:`PARTNER_WEIGHT` of their weight on that atom."""
    main = (level.get("top_atoms") or [{}])[0]
    other = (state.get("top_atoms") or [{}])[0]
    same = (main.get("element"), main.get("index")) == (other.get("element"), other.get("index"))
    heavy = min(main.get("fraction", 0), other.get("fraction", 0)) > PARTNER_WEIGHT
    return bool(main) and same and heavy and state.get("ipr", 0) >= 0.5 * level.get("ipr", 0)


@job
def hybrid_report(cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{cell: {"pbe": doc, "hybrid": doc}}`` -> gap, level and IPR of each, side by side."""
    return {
        name: {kind: cell_summary(doc) for kind, doc in pair.items() if doc is not None}
        for name, pair in cells.items()
    }


def calcs_per_cell(static_maker: Any, spec: dict[str, Any]) -> int:
    """Calculations the hybrid step adds per cell (0 without it; 2 when a PBE start with the
    hybrid's ``soc`` is needed, else 1)."""
    if not spec:
        return 0
    return (
        2 if "soc" in spec and bool(spec["soc"]) != bool(getattr(static_maker, "soc", None)) else 1
    )


def hybrid_step(
    cells: dict[str, tuple], static_maker: Any, spec: dict[str, Any], labels: dict[str, Any]
) -> tuple[list, Any]:
    """The hybrid step of a study for ``cells`` = ``{name: (structure, pbe static job, pbe
    projection job or None, maker fields)}``; returns (jobs, the report job)."""
    jobs, pairs = [], {}
    for name, (structure, static, projected, fields) in cells.items():
        if static is None:
            raise InputError(
                "the hybrid step restarts from the PBE static of each cell",
                "give the study a static step",
            )
        chain, hybrid = hybrid_chain(structure, static, static_maker, spec, name, labels, **fields)
        jobs += chain
        pairs[name] = {"pbe": (projected or static).output, "hybrid": hybrid.output}
    report = hybrid_report(pairs)
    report.name = "hybrid report"
    return [*jobs, report], report


@job
def with_hybrid(report: dict[str, Any], hybrid: dict[str, Any]) -> dict[str, Any]:
    """A study report with the hybrid step's cells added under ``hybrid``."""
    return {**report, "hybrid": hybrid}
