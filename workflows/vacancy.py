"""VacancyStudy: symmetry-distinct vacancies in all their charge states, with IPR and levels.

Seeds: V_Br in Cs4PbBr6 (is there a localized mid-gap level?), V_Cl/V_Na/V_Ag in
Cs2Na(1-x)Ag(x)BiCl6.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobflow import Flow, Maker, job

from perovflow.workflows.common import (
    as_structure,
    make_supercell_job,
    relax_chain,
    remove_site_job,
    run_maker,
)
from perovflow.workflows.vacancy_levels import (
    _gap_states,
    _ipr,
    defect_level,
    edge_ipr,
    projections_of,
)
from perovflow.workflows.vacancy_phases import (
    check_competing_phases,
    dielectric_of,
    formation_report,
    phase_makers,
    phase_relaxes_cell,
)

__all__ = ["VacancyFlowMaker", "defect_level", "edge_ipr", "flow_from_study", "projections_of"]


def electronic_chain(
    structure: Any,
    static_maker: Maker,
    dos_maker: Maker | None,
    name: str,
    labels: dict,
    **fields: Any,
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
    chemical-potential limit and transition levels, charged cells corrected (Freysoldt or
    eFNV, :mod:`perovflow.analysis.corrections`) with the uncorrected values beside them.
    The static runs of the bulk supercell and of every charged cell write the electrostatic
    potential (``write_potential``); the dielectric tensor is ``dielectric`` or the output
    of ``dielectric_maker`` run on the relaxed bulk cell.

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
    dielectric
        ``{"tensor": scalar or 3x3, "source": "..."}`` (or the bare value); it wins over
        ``dielectric_maker``. Without either, charged cells are reported uncorrected.
    dielectric_maker
        Maker whose output has ``epsilon_static`` and ``epsilon_electronic`` (3x3); run on
        the relaxed bulk cell, its ``epsilon_static`` corrects the charged cells.
    correction
        ``auto`` (eFNV for an anisotropic ε, else Freysoldt), ``freysoldt``, ``efnv`` or
        None (no correction, no potentials written).
    """

    name: str = "vacancy study"
    relax_maker: Maker | None = None
    static_maker: Maker | None = None
    dos_maker: Maker | None = None
    prerelax_maker: Maker | None = None
    supercell: str | None = None
    elements: list[str] = field(default_factory=list)
    charge_states: dict[str, list[int]] = field(default_factory=dict)
    competing_phases: dict[str, Any] = field(default_factory=dict)
    ipr_threshold: float | None = None  # None: analysis default max(0.03, 8/N)
    phase_relax_maker: Maker | None = None
    phase_static_maker: Maker | None = None
    dielectric: Any = None
    dielectric_maker: Maker | None = None
    correction: str | None = "auto"
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
        sites = self.sites(structure)
        charged = self.correction is not None and any(s["charge"] for s in sites)
        sc = make_supercell_job(bulk, self.supercell)
        sc.name = "bulk supercell"
        jobs.append(sc)
        el_jobs, bulk_static, bulk_dos = electronic_chain(
            sc.output, self._static(charged), self.dos_maker, "bulk supercell", labels
        )
        jobs += el_jobs
        cells = {"bulk supercell": (sc.output, bulk_static, bulk_dos, {})}  # hybrid step
        defects = []
        for site in sites:
            jobs_, row, cell = self._defect(sc.output, site, labels)
            jobs += jobs_
            defects.append(row)
            cells[f"{site['label']} q={site['charge']:+d}"] = cell
        jobs_, phases = self._phases(labels)
        jobs += jobs_
        dielectric = self.dielectric
        if dielectric is None and self.dielectric_maker is not None and charged:
            eps = run_maker(self.dielectric_maker, bulk, "bulk dielectric", labels)
            jobs.append(eps)
            dielectric = eps.output
        report = vacancy_report(
            _out(bulk_static), _out(bulk_dos), defects, phases, self.ipr_threshold,
            dielectric, self.correction,
        )  # fmt: skip
        report.name = "vacancy report"
        jobs.append(report)
        if self.hybrid:  # hybrid static on the PBE geometries (workflows/hybrid.py)
            from perovflow.workflows.hybrid import hybrid_step, with_hybrid

            hyb_jobs, hyb = hybrid_step(cells, self.static_maker, self.hybrid, labels)
            report = with_hybrid(report.output, hyb.output)
            report.name = "vacancy report + hybrid"
            jobs += [*hyb_jobs, report]
        return Flow(jobs, output=report.output, name=self.name)

    def _static(self, potential: bool) -> Any:
        """The static maker, writing the electrostatic potential when a correction needs it."""
        return _d(self.static_maker, write_potential=True) if potential else self.static_maker

    def _defect(self, bulk_sc: Any, site: dict[str, Any], labels: dict) -> tuple[list, dict, tuple]:
        """Jobs of one vacancy and charge (build, relax, static + PDOS), its report row and
        its cell for the hybrid step ``(relaxed structure, static, dos, maker fields)``."""
        tag = f"{site['label']} q={site['charge']:+d}"
        lab = {**labels, "defect": site["label"], "charge": site["charge"]}
        cut = remove_site_job(bulk_sc, site["index"])
        cut.name = f"{tag} build"
        fields = {"charge": site["charge"], "defect": True}
        chain, relaxed = relax_chain(cut.output, _d(self.relax_maker, **fields),
                                     _d(self.prerelax_maker), tag, lab)  # fmt: skip
        static_maker = self._static(bool(site["charge"]) and self.correction is not None)
        el, static, dos = electronic_chain(relaxed, static_maker, self.dos_maker, tag, lab,
                                           **fields)  # fmt: skip
        row = {**site, "static": _out(static), "dos": _out(dos),
               "relax": _out(chain[-1] if chain else None)}  # fmt: skip
        return [cut, *chain, *el], row, (relaxed, static, dos, fields)

    def _phases(self, labels: dict) -> tuple[list, dict]:
        """Relax (cell included, see :func:`phase_relaxes_cell`) + static of every phase."""
        jobs, phases = [], {}
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
        return jobs, phases


def _d(maker: Any, **fields: Any) -> Any:
    from perovflow.workflows.common import with_fields

    return None if maker is None else with_fields(maker, **fields)


def _out(job_: Any) -> Any:
    return None if job_ is None else job_.output


def _doc(obj: Any) -> dict[str, Any] | None:
    if obj is None:
        return None
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)


@job
def vacancy_report(
    bulk_static: Any,
    bulk_dos: Any,
    defects: list[dict],
    phases: dict,
    threshold: float | None = None,
    dielectric: Any = None,
    correction: str | None = "auto",
) -> dict[str, Any]:
    """Per vacancy and charge: energy, localized gap states, IPR vs the bulk edges; levels;
    formation energies (charged cells corrected with ``dielectric``, see
    :func:`~perovflow.workflows.vacancy_phases.formation_report`)."""
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
            "doc": {"structure": doc["structure"], "energy_eV": doc["energy_eV"],
                    "potential": doc.get("potential")} if doc else None,
        })  # fmt: skip
    return {
        "bulk": {**edges, "host_gap_eV": None if None in edges.values() else edges["cbm_eV"] - edges["vbm_eV"],
                 "edge_ipr": edge_ipr(bulk_ipr, bulk_states)},
        "vacancies": [{k: v for k, v in r.items() if k != "doc"} for r in rows],
        "formation": formation_report(bulk, rows, {f: _doc(p) for f, p in phases.items()}, edges,
                                      dielectric_of(dielectric), correction),
    }  # fmt: skip


def _phase_structure(name: str) -> Any:
    from perovflow.structures.io import load_structure

    return load_structure(name, cell="primitive")


def flow_from_study(study: Any, makers: dict[str, Any], structure: Any) -> Flow:
    """Vacancy flow of a study file (see :class:`VacancyFlowMaker` for the steps).

    ``vacancy.dielectric`` of the study wins over ``makers["dielectric"]`` (an upstream
    maker computing the tensor), which is used when the study gives none.
    """
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
        dielectric=None if spec.dielectric is None else spec.dielectric.model_dump(),
        dielectric_maker=makers.get("dielectric"),
        correction=None if spec.correction == "none" else spec.correction,
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
