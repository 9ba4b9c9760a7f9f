"""Pieces shared by the study flows: small structure jobs, engine makers, job tags.

Flows never name a code: they receive relax/static/DOS makers (QE, CP2K or the ML
potential, all with ``make(structure, prev_dir=None)``) and NEB makers as arguments.
:func:`engine_maker` builds one from the registry with the user's settings on top;
:func:`with_fields` copies a maker with new field values (makers are never mutated).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jobflow import Job, Maker, job

from perovflow.errors import InputError

#: metadata key on jobs that run an expensive calculation (read by ``plan``)
CALC = "calc"


def as_structure(obj: Any) -> Any:
    """pymatgen Structure from a Structure, a structure dict, a TaskDocument or ASE Atoms."""
    from pymatgen.core import Structure

    if isinstance(obj, Structure):
        return obj
    if hasattr(obj, "structure") and not isinstance(obj, dict):
        obj = obj.structure
    if isinstance(obj, dict):
        return Structure.from_dict(obj.get("structure", obj) if "lattice" not in obj else obj)
    from ase import Atoms

    if isinstance(obj, Atoms):
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_structure(obj)
    raise InputError(f"cannot use a {type(obj).__name__} as a structure", "pass a Structure")


def maker_code(maker: Maker) -> str:
    """Which code a maker drives: ``qe``, ``cp2k``, ``mlip`` (from its module or ``code``)."""
    code = getattr(maker, "code", None)
    if isinstance(code, str):
        return code
    module = type(maker).__module__
    for name in ("qe", "cp2k", "mlip"):
        if f".{name}." in f"{module}.":
            return name
    return "other"


def maker_kind(maker: Maker) -> str:
    """Calculation kind of an engine maker (``relax``, ``vc-relax`` when the cell relaxes too,
    ``static``, ``bands``, ``dos``, ``dielectric``...)."""
    kind = str(getattr(maker, "calc_type", None) or getattr(maker, "kind", "calc"))
    return "vc-relax" if kind == "relax" and getattr(maker, "relax_cell", False) else kind


def with_fields(maker: Maker, **values: Any) -> Maker:
    """Copy of ``maker`` with the given fields set; fields the maker lacks are skipped."""
    names = {f.name for f in dataclasses.fields(maker)}
    return dataclasses.replace(maker, **{k: v for k, v in values.items() if k in names})


def engine_maker(
    code: str, kind: str, protocol: str, overrides: dict[str, Any] | None = None, **fields: Any
) -> Any:
    """Maker for ``code``/``kind`` from the registry; the user's ``overrides`` win.

    DFT makers take them as ``input_set_overrides``; makers without that field (the ML
    potential) take them as field values (``fmax``, ``steps``, ``model``...), and an unknown
    key is an error, never silently dropped.
    """
    from perovflow.engines.registry import get_maker, maker_class

    accepted = {f.name for f in dataclasses.fields(maker_class(code, kind))}
    given = {k: v for k, v in {"protocol": protocol, **fields}.items() if k in accepted}
    if "input_set_overrides" in accepted:
        given["input_set_overrides"] = dict(overrides or {})
    else:
        given.update(overrides or {})
    return get_maker(code, kind, **given)


def tag(job_: Job, maker: Maker | None = None, **calc: Any) -> Job:
    """Record on the job what expensive calculation it runs (``plan`` counts these)."""
    info = {"code": maker_code(maker), "kind": maker_kind(maker)} if maker is not None else {}
    if getattr(maker, "write_potential", False):
        info["potential"] = True  # + pp.x plot_num=11 / V_HARTREE cube (charged defects)
    if getattr(maker, "projwfc", False) and info.get("kind") != "dos":
        info["programs"] = ["projwfc.x"]  # a static that projects its own states
    info.update(calc)
    job_.metadata = {**(job_.metadata or {}), CALC: info}
    return job_


def run_maker(
    maker: Maker,
    structure: Any,
    name: str,
    labels: dict[str, Any],
    prev_dir: Any = None,
    **fields: Any,
) -> Job:
    """``maker.make(structure)`` on a renamed, relabelled copy, tagged for ``plan``."""
    base = dict(getattr(maker, "labels", {}) or {})
    copy = with_fields(maker, name=name, labels={**base, **labels}, **fields)
    job_ = copy.make(structure, prev_dir=prev_dir) if prev_dir is not None else copy.make(structure)
    return tag(job_, copy)


def relax_chain(
    structure: Any,
    relax_maker: Maker,
    prerelax_maker: Maker | None,
    name: str,
    labels: dict,
    cell: bool = False,
) -> tuple[list[Job], Any]:
    """Optional ML pre-relax then the relax maker; returns (jobs, relaxed-structure reference).

    ``cell``: the relax maker relaxes the cell too (``relax_cell``: QE vc-relax, CP2K
    CELL_OPT, the ML potential's cell filter); the ML pre-relax keeps the cell. A user's
    ``relax_cell`` in the maker's ``input_set_overrides`` still wins.
    """
    jobs: list[Job] = []
    if prerelax_maker is not None:
        pre = run_maker(prerelax_maker, structure, f"{name} ml-prerelax", labels)
        jobs.append(pre)
        structure = pre.output.structure
    if relax_maker is not None:
        extra = {"relax_cell": True} if cell else {}
        rel = run_maker(relax_maker, structure, f"{name} relax", labels, **extra)
        jobs.append(rel)
        structure = rel.output.structure
    return jobs, structure


@job
def make_supercell_job(structure: Any, spec: str | list | None) -> Any:
    """Supercell of ``structure`` (``"2x1x1"`` or a matrix); None returns it unchanged."""
    structure = as_structure(structure)
    if not spec or spec in ("1x1x1", "1"):
        return structure
    from perovflow.structures.supercells import make_supercell

    return make_supercell(structure, spec)


@job
def remove_site_job(structure: Any, index: int, site_properties: dict | None = None) -> Any:
    """``structure`` without site ``index`` (site properties of the input can be restored)."""
    structure = as_structure(structure).copy()
    if site_properties:
        for key, values in site_properties.items():
            structure.add_site_property(key, list(values))
    structure.remove_sites([index])
    return structure


@job
def hop_endpoints_job(structure: Any, hop: dict[str, Any]) -> dict[str, Any]:
    """NEB end points of ``hop`` (a :class:`perovflow.structures.paths.Hop` dict)."""
    from perovflow.structures.paths import Hop, hop_endpoints

    fields = dict(hop)
    fields["image"] = tuple(fields.get("image", (0, 0, 0)))
    initial, final = hop_endpoints(as_structure(structure), Hop(**fields))
    return {"initial": initial, "final": final}
