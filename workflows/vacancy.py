"""VacancyStudy: symmetry-distinct vacancies in all their charge states, with IPR and levels.

Seeds: V_Br in Cs4PbBr6 (is there a localized mid-gap level?), V_Cl/V_Na/V_Ag in
Cs2Na(1-x)Ag(x)BiCl6.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobflow import Flow, Maker, job

from perovflow.electronic import SPIN_NAMES
from perovflow.workflows.common import (
    as_structure,
    make_supercell_job,
    relax_chain,
    remove_site_job,
    run_maker,
)
from perovflow.workflows.vacancy_phases import (
    check_competing_phases,
    formation_report,
    phase_makers,
    phase_relaxes_cell,
)


def electronic_chain(
    structure: Any, static_maker: Any, dos_maker: Any, name: str, labels: dict, **fields: Any
) -> tuple[list, Any, Any]:
    """static (scf) then, if given, the projected DOS run on its density.

    Returns (jobs, static job or None, job whose output carries the projections or None).
    """
    if static_maker is None:
        return [], None, None
    static = run_maker(static_maker, structure, f"{name} static", labels, **fields)
    if dos_maker is None:
        return [static], static, static
    dos = run_maker(
        dos_maker, static.output.structure, f"{name} pdos", labels,
        prev_dir=static.output.dir_name, **fields,
    )  # fmt: skip
    return [static, dos], static, dos


@dataclass
class VacancyFlowMaker(Maker):
    """Vacancy study (code-agnostic: QE, CP2K and the ML potential plug in the same way).

    Steps: (1) relax the bulk cell, lattice included (optional ML pre-relax, then
    ``relax_maker`` with ``relax_cell``);
    (2) build the supercell of the relaxed bulk; (3) bulk supercell static + PDOS (reference
    energy, band edges, bulk IPR); (4) enumerate the symmetry-distinct vacancy sites of each
    element (spglib) with their charge states; (5) for every site and charge: remove the
    atom, relax (pre-relax + ``relax_maker``), static + PDOS; (6) relax (cell included, see
    :func:`phase_relaxes_cell`) + static of every competing phase
    (``phase_relax_maker``/``phase_static_maker``; checked before anything
    runs: every element of the host needs a pure phase); (7) report: IPR of the states of
    each vacancy cell against the bulk edges, Kohn–Sham levels, formation energies at every
    chemical-potential limit and transition levels (charged cells uncorrected).

    Attributes
    ----------
    relax_maker, static_maker, dos_maker, prerelax_maker
        Engine makers (any code); None skips that step.
    supercell
        Supercell of the bulk cell for the defects (``"2x1x1"``); None: the cell itself.
    elements
        Elements to remove.
    charge_states
        Element -> charges; missing elements use the structures layer's suggestion.
    competing_phases
        ``{name: structure}`` of phases and elemental references for the chemical-potential
        limits (empty: no formation energies).
    phase_relax_maker, phase_static_maker
        Makers of the competing phases (None: ``relax_maker``/``static_maker``); other
        cells than the supercell need their own k grids.
    """

    name: str = "vacancy study"
    relax_maker: Any = None
    static_maker: Any = None
    dos_maker: Any = None
    prerelax_maker: Any = None
    supercell: str | None = None
    elements: list[str] = field(default_factory=list)
    charge_states: dict[str, list[int]] = field(default_factory=dict)
    competing_phases: dict[str, Any] = field(default_factory=dict)
    ipr_threshold: float | None = None  # None: analysis default max(0.03, 8/N)
    phase_relax_maker: Any = None
    phase_static_maker: Any = None
    hybrid: dict[str, Any] = field(default_factory=dict)  # hybrid step: workflows/hybrid.py

    def sites(self, structure: Any) -> list[dict[str, Any]]:
        """The symmetry-distinct vacancies of the supercell, one dict per site and charge."""
        from perovflow.structures.defects import enumerate_vacancies
        from perovflow.structures.supercells import make_supercell

        cell = as_structure(structure)
        cell = make_supercell(cell, self.supercell) if self.supercell else cell
        out = []
        for element in self.elements:
            for site in enumerate_vacancies(cell, element):
                for q in self.charge_states.get(element, site.charge_states):
                    out.append(
                        {"label": site.label, "index": site.index, "charge": int(q),
                         "multiplicity": site.multiplicity, "element": element,
                         "n_equivalent_total": sum(1 for s in cell if s.specie.symbol == element)}
                    )  # fmt: skip
        return out

    def make(self, structure: Any) -> Flow:
        """Build the flow for ``structure`` (the bulk unit cell)."""
        labels = {"study": self.name}
        if self.competing_phases:
            check_competing_phases(as_structure(structure), self.competing_phases)
        jobs, bulk = relax_chain(
            structure, self.relax_maker, self.prerelax_maker, "bulk", labels, cell=True
        )
        sc = make_supercell_job(bulk, self.supercell)
        sc.name = "bulk supercell"
        jobs.append(sc)
        el_jobs, bulk_static, bulk_dos = electronic_chain(
            sc.output, self.static_maker, self.dos_maker, "bulk supercell", labels
        )
        jobs += el_jobs
        cells = {"bulk supercell": (sc.output, bulk_static, bulk_dos, {})}  # hybrid step
        defects = []
        for site in self.sites(structure):
            tag = f"{site['label']} q={site['charge']:+d}"
            lab = {**labels, "defect": site["label"], "charge": site["charge"]}
            cut = remove_site_job(sc.output, site["index"])
            cut.name = f"{tag} build"
            fields = {"charge": site["charge"], "defect": True}
            chain, relaxed = relax_chain(cut.output, _d(self.relax_maker, **fields),
                                         _d(self.prerelax_maker), tag, lab)  # fmt: skip
            el, static, dos = electronic_chain(
                relaxed, self.static_maker, self.dos_maker, tag, lab, **fields
            )
            jobs += [cut, *chain, *el]
            cells[tag] = (relaxed, static, dos, fields)
            defects.append(
                {
                    **site,
                    "static": _out(static),
                    "dos": _out(dos),
                    "relax": _out(chain[-1] if chain else None),
                }
            )
        phases = {}
        relax_maker = self.phase_relax_maker or self.relax_maker
        static_maker = self.phase_static_maker or self.static_maker
        for formula, phase in self.competing_phases.items():
            cell = phase_relaxes_cell(phase, relax_maker)
            chain, relaxed = relax_chain(
                phase, relax_maker, self.prerelax_maker, formula, labels, cell=cell
            )
            el, static, _ = electronic_chain(relaxed, static_maker, None, formula, labels)
            jobs += [*chain, *el]
            phases[formula] = _out(static or (chain[-1] if chain else None))
        report = vacancy_report(
            _out(bulk_static), _out(bulk_dos), defects, phases, self.ipr_threshold
        )
        report.name = "vacancy report"
        jobs.append(report)
        if self.hybrid:  # hybrid static on the PBE geometries (workflows/hybrid.py)
            from perovflow.workflows.hybrid import hybrid_step, with_hybrid

            hyb_jobs, hyb = hybrid_step(cells, self.static_maker, self.hybrid, labels)
            report = with_hybrid(report.output, hyb.output)
            report.name = "vacancy report + hybrid"
            jobs += [*hyb_jobs, report]
        return Flow(jobs, output=report.output, name=self.name)


def _d(maker: Any, **fields: Any) -> Any:
    from perovflow.workflows.common import with_fields

    return None if maker is None else with_fields(maker, **fields)


def _out(job_: Any) -> Any:
    return None if job_ is None else job_.output


def _doc(obj: Any) -> dict[str, Any] | None:
    if obj is None:
        return None
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)


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


@job
def vacancy_report(
    bulk_static: Any,
    bulk_dos: Any,
    defects: list[dict],
    phases: dict,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Per vacancy and charge: energy, localized gap states, IPR vs the bulk edges; levels."""
    bulk = _doc(bulk_static)
    bulk_ipr, bulk_states = _ipr(_doc(bulk_dos), threshold, bulk)
    edges = {"vbm_eV": (bulk_ipr or {}).get("vbm_eV"), "cbm_eV": (bulk_ipr or {}).get("cbm_eV")}
    if edges["vbm_eV"] is None and bulk:
        elec = bulk.get("electronic") or {}
        edges = {"vbm_eV": elec.get("vbm_eV"), "cbm_eV": elec.get("cbm_eV")}
    rows = []
    for d in defects:
        doc = _doc(d.get("static")) or _doc(d.get("relax"))
        summary, states = _ipr(_doc(d.get("dos")), threshold, _doc(d.get("static")))
        gap = _gap_states(summary)
        level = defect_level(states or [])
        elec = (doc or {}).get("electronic") or {}
        rows.append({
            "label": d["label"], "charge": d["charge"], "multiplicity": d["multiplicity"],
            "energy_eV": doc.get("energy_eV") if doc else None,
            "total_magnetization": elec.get("total_magnetization"),
            "gap_states": gap, **level,
            "doc": {"structure": doc["structure"], "energy_eV": doc["energy_eV"]} if doc else None,
        })  # fmt: skip
    return {
        "bulk": {**edges, "host_gap_eV": None if None in edges.values() else edges["cbm_eV"] - edges["vbm_eV"],
                 "edge_ipr": edge_ipr(bulk_ipr, bulk_states)},
        "vacancies": [{k: v for k, v in r.items() if k != "doc"} for r in rows],
        "formation": formation_report(bulk, rows, {f: _doc(p) for f, p in phases.items()}, edges),
    }  # fmt: skip


def _phase_structure(name: str) -> Any:
    from perovflow.structures.io import load_structure

    return load_structure(name, cell="primitive")


def flow_from_study(study: Any, makers: dict[str, Any], structure: Any) -> Flow:
    """Vacancy flow of a study file (see :class:`VacancyFlowMaker` for the steps)."""
    spec = study.section()
    phase_relax, phase_static = (
        phase_makers(study, makers) if spec.competing_phases else (None, None)
    )
    maker = VacancyFlowMaker(
        name=study.name,
        relax_maker=makers["relax"],
        static_maker=makers["static"],
        dos_maker=makers["dos"],
        prerelax_maker=makers["prerelax"],
        supercell=spec.supercell,
        elements=list(spec.elements),
        charge_states=dict(spec.charge_states),
        competing_phases={p: _phase_structure(p) for p in spec.competing_phases},
        ipr_threshold=spec.ipr_threshold,
        phase_relax_maker=phase_relax,
        phase_static_maker=phase_static,
        hybrid=dict(spec.hybrid or {}),
    )
    flow = maker.make(structure)
    sites = maker.sites(structure)
    per = sum(m is not None for m in (maker.relax_maker, makers["static"], makers["dos"]))
    from perovflow.workflows.hybrid import calcs_per_cell

    per += calcs_per_cell(makers["static"], maker.hybrid)
    flow.metadata = {**(flow.metadata or {}), "symmetry": {
        "unit": "vacancy sites x charges", "items_distinct": len(sites),
        "items_total": _all_sites(sites), "calcs_per_item": per}}  # fmt: skip
    return flow


def _all_sites(sites: list[dict[str, Any]]) -> int:
    """Vacancy calculations without symmetry: every atom of the element, every charge."""
    charges: dict[str, set[int]] = {}
    counts: dict[str, int] = {}
    for s in sites:
        charges.setdefault(s["element"], set()).add(s["charge"])
        counts[s["element"]] = s["n_equivalent_total"]
    return sum(counts[el] * len(q) for el, q in charges.items())
