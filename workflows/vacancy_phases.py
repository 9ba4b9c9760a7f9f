"""Competing phases of a vacancy study: checks, makers and the formation-energy report.

Formation energies need the chemical-potential limits of the host, i.e. a phase diagram of
its elements: every element needs a pure phase (Cs, Pb, Br2...) among the competing phases,
checked when the flow is built (:func:`check_competing_phases`), not after the runs.
"""

from __future__ import annotations

from typing import Any

from perovflow.errors import InputError
from perovflow.workflows.common import as_structure

GRID = ("kpts", "koffset")  # explicit k grids of the supercell, not carried to other cells
MOLECULAR_ELEMENTS = ("H", "N", "O", "F", "Cl", "Br", "I")  # pure phases are molecular crystals


def _has_dispersion(maker: Any) -> bool:
    """Whether ``maker`` computes a dispersion correction (protocol or user settings)."""
    from perovflow.engines.protocols import get_protocol
    from perovflow.settings import get_settings

    overrides = dict(getattr(maker, "input_set_overrides", None) or {})
    flat = {**overrides, **(overrides.get("system") or {})}
    for key in ("dispersion", "vdw_corr", "system.vdw_corr"):
        if key in flat:
            return str(flat[key]).lower() not in ("none", "null", "false", "")
    if not hasattr(maker, "input_set_overrides") or not hasattr(maker, "charge"):
        return False  # the ML potential has no dispersion term
    protocol = getattr(maker, "protocol", None) or get_settings().protocol
    return bool(get_protocol(protocol).get("dispersion"))


def phase_relaxes_cell(phase: Any, maker: Any) -> bool:
    """Whether a competing phase is relaxed with its cell.

    Every phase is, except a molecular crystal (Br2, Cl2, I2...) when ``maker`` has no
    dispersion correction: without D3 (the ``standard`` and ``seed`` protocols have it,
    ``fast`` has not) PBE barely binds the molecules to each other, so such a cell is kept
    at its measured lattice and only the positions relax.
    """
    if maker is None:
        return False
    elements = {e.symbol for e in as_structure(phase).composition.elements}
    molecular = len(elements) == 1 and elements <= set(MOLECULAR_ELEMENTS)
    return not molecular or _has_dispersion(maker)


def phase_makers(study: Any, makers: dict[str, Any]) -> tuple[Any, Any]:
    """Relax and static makers of the competing phases.

    They take the study's ``settings`` except an explicit ``kpts``/``koffset`` grid (chosen
    for the defect supercell, meaningless for another cell: the phases use the k spacing), then
    ``vacancy.phase_settings`` on top (user wins).
    """
    from perovflow.engines.protocols import merge
    from perovflow.workflows.common import engine_maker

    extra = study.section().phase_settings
    out = []
    for kind in ("relax", "static"):
        if makers[kind] is None:
            out.append(None)
            continue
        base = {k: v for k, v in (study.settings.get(kind) or {}).items() if k not in GRID}
        out.append(engine_maker(study.code, kind, study.protocol, merge(base, extra.get(kind))))
    return out[0], out[1]


def dielectric_of(value: Any) -> dict[str, Any] | None:
    """``{"tensor": 3x3, "source": str}`` from a study's dielectric entry, a bare scalar or
    tensor, or the output of a dielectric maker (its ``epsilon_static``); None stays None."""
    if value is None:
        return None
    doc = value.model_dump() if hasattr(value, "model_dump") else value
    if not isinstance(doc, dict) and hasattr(doc, "epsilon_static"):  # any duck-typed output
        doc = {k: getattr(doc, k, None) for k in ("epsilon_static", "epsilon_electronic",
                                                  "dir_name", "task_label")}  # fmt: skip
    if isinstance(doc, dict) and "epsilon_static" in doc:
        where = doc.get("dir_name") or doc.get("task_label") or "the dielectric job"
        return {"tensor": doc["epsilon_static"], "epsilon_electronic": doc.get("epsilon_electronic"),
                "source": f"computed: epsilon_static (ε∞ + ionic) of {where}"}  # fmt: skip
    if isinstance(doc, dict):
        return {"tensor": doc["tensor"], "source": doc.get("source") or "given"}
    return {"tensor": doc, "source": "given"}


def formation_report(
    bulk: dict | None,
    rows: list[dict],
    phases: dict,
    edges: dict,
    dielectric: dict | None = None,
    correction: str | None = "auto",
) -> dict[str, Any]:
    """Formation energies and transition levels per vacancy (analysis.formation).

    Charged cells are corrected (``correction``: auto, freysoldt, efnv) with the dielectric
    tensor ``{"tensor", "source"}``; the uncorrected values stand beside. Without a tensor,
    or without the potentials, they are reported uncorrected and ``uncorrected_reason`` says
    why.
    """
    if not phases:
        return {"skipped": "no competing_phases given (formation energies not requested)"}
    if bulk is None or edges.get("vbm_eV") is None:
        return {"skipped": "needs the bulk supercell energy and band edges"}
    missing = sorted(f for f, d in phases.items() if not d or d.get("energy_eV") is None)
    if missing:
        return {"skipped": f"no energy for the competing phases {', '.join(missing)}"}
    from perovflow.analysis.formation import CellCalc

    entries = phase_entries(phases)
    out: dict[str, Any] = {}
    bulk_calc = CellCalc(bulk["structure"], bulk["energy_eV"], 0, bulk.get("potential"), "bulk")
    for label in sorted({r["label"] for r in rows}):
        cells = [CellCalc(r["doc"]["structure"], r["doc"]["energy_eV"], r["charge"],
                          r["doc"].get("potential"), label=label)
                 for r in rows if r["label"] == label and r.get("doc")]  # fmt: skip
        out[label] = _one_defect(bulk_calc, cells, entries, edges, dielectric, correction)
    return out


def _one_defect(
    bulk: Any, cells: list, entries: list, edges: dict, dielectric: dict | None, scheme: str | None
) -> dict[str, Any]:
    """Formation result of one vacancy: corrected when it can be, else why not."""
    from perovflow.analysis.formation import formation_energies

    charged = sorted({c.charge for c in cells if c.charge})
    reason = None
    if charged and scheme is None:
        reason = "correction switched off (vacancy.correction: none)"
    elif charged and dielectric is None:
        reason = "no dielectric tensor given (vacancy.dielectric) or computed"
    elif charged and any(c.potential is None for c in [bulk, *cells] if c is bulk or c.charge):
        reason = "the electrostatic potentials of the bulk or charged cells are missing"
    use = None if reason else scheme
    gap = edges["cbm_eV"] - edges["vbm_eV"]
    eps = None if dielectric is None else dielectric["tensor"]
    try:
        try:
            res = formation_energies(bulk, cells, entries, edges["vbm_eV"], gap, eps, use)
        except InputError as exc:  # the correction failed: uncorrected, saying why
            if use is None:
                raise
            reason = f"correction failed: {exc.problem}"
            res = formation_energies(bulk, cells, entries, edges["vbm_eV"], gap, eps, None)
    except Exception as exc:  # report, do not lose the rest of the study
        return {"skipped": str(exc).splitlines()[0]}
    summary = {**res.summary(), "correction": res.meta.get("correction") if charged else None,
               "dielectric": dielectric}  # fmt: skip
    summary["uncorrected_charges"] = charged if reason else []
    if reason:
        summary["uncorrected_reason"] = reason
    return summary


def phase_entries(phases: dict[str, dict]) -> list[Any]:
    """pymatgen entries (whole cell: composition and total energy) of the competing phases."""
    from pymatgen.entries.computed_entries import ComputedEntry

    return [
        ComputedEntry(as_structure(doc["structure"]).composition, float(doc["energy_eV"]),
                      entry_id=name)
        for name, doc in phases.items()
    ]  # fmt: skip


def check_competing_phases(host: Any, phases: dict[str, Any]) -> None:
    """Raise a one-line error unless every element of ``host`` has a pure competing phase.

    The chemical-potential limits (pymatgen phase diagram) need an elemental reference for
    each element; phases with elements foreign to the host are refused as well.
    """
    host_el = {e.symbol for e in host.composition.elements}
    pure: set[str] = set()
    foreign: list[str] = []
    for name, phase in phases.items():
        els = {e.symbol for e in as_structure(phase).composition.elements}
        pure |= els if len(els) == 1 else set()
        foreign += [f"{name} ({', '.join(sorted(els - host_el))})"] if els - host_el else []
    missing = sorted(host_el - pure)
    if missing:
        raise InputError(
            f"competing phases have no elemental reference for {', '.join(missing)}; "
            f"formation energies need every element of {host.composition.reduced_formula}",
            f"add {', '.join(elemental_reference(e) for e in missing)} to "
            "vacancy.competing_phases (or remove competing_phases to skip formation energies)",
        )
    if foreign:
        raise InputError(
            f"competing phases {', '.join(foreign)} hold elements absent from "
            f"{host.composition.reduced_formula}",
            "list only phases made of the host's elements",
        )


def elemental_reference(element: str) -> str:
    """Name of the prototype of pure ``element`` (``Br`` -> ``Br2``), or a hint to give a file."""
    from pymatgen.core import Composition

    from perovflow.structures.prototypes import list_prototypes

    for info in list_prototypes():
        if {e.symbol for e in Composition(info.formula).elements} == {element}:
            return info.name
    return f"a structure file of elemental {element}"
