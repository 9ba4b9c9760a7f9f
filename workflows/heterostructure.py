"""HeterostructureStudy: interface or nanocrystal -> relax -> domain PDOS, IPR, alignment.

Seed: CsPbBr3–Pb4S3Br2 (quasi-type II, valence band on the chalcohalide), and the 0D/3D
Cs4PbBr6/CsPbBr3 heterostructures. Atoms carry a ``domain`` site property; it is kept by
index through the engine steps (codes do not reorder atoms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobflow import Flow, Maker, job

from perovflow.workflows.common import relax_chain
from perovflow.workflows.vacancy import _doc, _out, electronic_chain


def domain_groups(structure: Any, prop: str = "domain") -> dict[str, list[int]]:
    """``{domain: [atom indices]}`` from a site property (every atom must have one)."""
    from perovflow.errors import InputError

    values = (getattr(structure, "site_properties", None) or {}).get(prop)
    if not values or any(v is None for v in values):
        raise InputError(
            f"the structure has no '{prop}' label on every atom",
            "build it with perovflow interfaces/nanocrystals (they tag each atom's domain)",
        )
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(values):
        groups.setdefault(str(name), []).append(i)
    return groups


@dataclass
class HeterostructureFlowMaker(Maker):
    """Heterostructure study (periodic QE, CP2K cluster, or any engine with projections).

    Steps: (1) optional ML pre-relax; (2) relax with ``relax_maker``; (3) static (+ PDOS run
    for codes that need one) for per-atom projections; (4) report: PDOS by domain, domain
    band edges and the alignment type (type I / II / quasi-type II), IPR of every state and
    the localized trap states inside the gap with the domain that carries them.
    """

    name: str = "heterostructure study"
    relax_maker: Maker | None = None
    static_maker: Maker | None = None
    dos_maker: Maker | None = None
    prerelax_maker: Maker | None = None
    ipr_threshold: float | None = None  # None: analysis default max(0.03, 8/N)
    pair: tuple[str, str] | None = None

    def make(self, structure: Any) -> Flow:
        """Build the flow for ``structure`` (Structure or Molecule with ``domain`` labels)."""
        groups = domain_groups(structure)
        labels = {"study": self.name}
        jobs, relaxed = relax_chain(
            structure, self.relax_maker, self.prerelax_maker, "heterostructure", labels
        )
        el, static, dos = electronic_chain(
            relaxed, self.static_maker, self.dos_maker, "heterostructure", labels
        )
        report = heterostructure_report(_out(dos or static), groups, self.ipr_threshold, self.pair)
        report.name = "alignment report"
        return Flow([*jobs, *el, report], output=report.output, name=self.name)


@job
def heterostructure_report(
    doc: Any, groups: dict[str, list[int]], threshold: float | None = None, pair: Any = None
) -> dict[str, Any]:
    """Alignment type, domain edges, and localized gap states with their domain."""
    from perovflow.analysis.alignment import align_domains
    from perovflow.analysis.ipr import analyze_ipr
    from perovflow.workflows.vacancy import projections_of

    data = _doc(doc) or {}
    if not data.get("projections"):
        from perovflow.errors import InputError

        raise InputError(
            "the electronic step produced no projections", "use a code with PDOS (qe, cp2k)"
        )
    proj = projections_of(data)
    alignment = align_domains(proj, groups, pair=tuple(pair) if pair else None).summary()
    ipr = analyze_ipr(proj, threshold=threshold, groups=groups).summary()
    edges = ipr.get("edges_delocalized") or {}
    vbm, cbm = edges.get("vbm_eV"), edges.get("cbm_eV")
    traps = [
        {
            "energy_eV": s["energy_eV"],
            "ipr": s["ipr"],
            "domain": max(s["shares"], key=s["shares"].get),
        }
        for s in ipr.get("localized_states", [])
        if vbm is not None and cbm is not None and vbm < s["energy_eV"] < cbm
    ]
    vb_domain = max(alignment["edges"], key=lambda d: alignment["edges"][d]["vbm_eV"])
    cb_domain = min(alignment["edges"], key=lambda d: alignment["edges"][d]["cbm_eV"])
    return {"result_type": "alignment", "alignment": alignment["alignment"], "vb_domain": vb_domain,
            "cb_domain": cb_domain, "edges": alignment["edges"],
            "valence_offset_eV": alignment["valence_offset_eV"],
            "conduction_offset_eV": alignment["conduction_offset_eV"], "trap_states": traps,
            "n_localized": ipr.get("n_localized"), "dir_name": data.get("dir_name")}  # fmt: skip


def build_heterostructure(builder: str, options: dict[str, Any]) -> Any:
    """Structure from the structures layer: ``interface``, ``nanocrystal``, ``half_sphere``, ``file``."""
    from perovflow.errors import InputError

    opts = dict(options)
    if builder == "file":
        from perovflow.structures.io import load_structure

        return load_structure(opts["path"])
    if builder == "interface":
        from perovflow.structures.interfaces import build_interfaces

        found = build_interfaces(**opts)
        first = found[0] if isinstance(found, list) else found
        return getattr(first, "structure", first)
    if builder == "nanocrystal":
        from perovflow.structures.nanocrystals import csbr_cube

        return csbr_cube(**opts)
    if builder == "half_sphere":
        from perovflow.structures.nanocrystals import place_half_sphere

        return place_half_sphere(**opts)
    raise InputError(
        f"unknown builder '{builder}'", "use file, interface, nanocrystal or half_sphere"
    )


def flow_from_study(study: Any, makers: dict[str, Any], structure: Any) -> Flow:
    """Heterostructure flow of a study file (see :class:`HeterostructureFlowMaker`)."""
    spec = study.section()
    built = structure if spec.builder == "file" and structure is not None else build_heterostructure(
        spec.builder, spec.options)  # fmt: skip
    maker = HeterostructureFlowMaker(
        name=study.name, relax_maker=makers["relax"], static_maker=makers["static"],
        dos_maker=makers["dos"] if study.code == "qe" else None, prerelax_maker=makers["prerelax"],
        ipr_threshold=spec.ipr_threshold,
    )  # fmt: skip
    return maker.make(built)
