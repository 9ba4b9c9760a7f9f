"""Defect formation energies, chemical-potential limits, finite-size corrections, levels.

    E_f(q, E_F) = E_def(q) - E_bulk - sum_i n_i (mu_i^0 + dmu_i) + q (E_VBM + E_F) + E_corr

What is used
------------
* pymatgen-analysis-defects ``FormationEnergyDiagram``: the chemical-potential limits of the
  host (vertices of its stability region among the competing phases given as pymatgen
  entries, e.g. CsBr, PbBr2, CsPbBr3, CsPb2Br5, Cs4PbBr6 and the elements), the formation
  energy lines and the thermodynamic transition levels (kinks of the lower envelope).
* Finite-size corrections of charged cells (:mod:`perovflow.analysis.corrections`):
  Freysoldt (planar averages, through pymatgen-analysis-defects) or Kumagai/eFNV
  (atomic-site potentials, anisotropic point-charge Ewald sum), from the potentials of the
  defect and bulk cells (:mod:`perovflow.analysis.potentials`: QE pp.x cube/filplot, CP2K
  V_HARTREE cube, or the ``potential`` record of a task document). The dielectric tensor
  is kept whole. Formation energies and transition levels are given corrected, with the
  uncorrected ones beside them (``uncorrected``).
* Kohn–Sham defect levels: defect-cell states inside the host gap after aligning the
  defect cell's energies to the bulk by the potential alignment term.

Inputs are simple records (:class:`CellCalc`) so QE and CP2K results mix freely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perovflow.analysis.corrections import (
    choose_scheme,
    defect_levels,
    efnv,
    far_field_shift,
    freysoldt,
)
from perovflow.errors import InputError

__all__ = [
    "CellCalc",
    "defect_levels",
    "far_field_shift",
    "formation_energies",
    "freysoldt",
    "transition_levels",
]


@dataclass
class CellCalc:
    """One supercell calculation (bulk or defect).

    Attributes
    ----------
    structure
        pymatgen Structure (or its dict) of the cell.
    energy_eV
        Total energy (eV).
    charge
        Cell charge q (e); 0 for the bulk.
    potential
        Planar averages ``{0: arr, 1: arr, 2: arr}`` (eV), a
        :class:`~perovflow.analysis.potentials.GridPotential`, a file path to read, or the
        ``potential`` record of a task document (planar averages and site potentials).
    label
        Name (e.g. ``V_Br``) and provenance (task uuid or folder) for reports.
    """

    structure: Any
    energy_eV: float
    charge: int = 0
    potential: Any = None
    label: str = ""
    provenance: str = ""

    def get_structure(self) -> Any:
        """The structure as a new pymatgen Structure (libraries decorate it in place)."""
        from pymatgen.core import Structure

        s = self.structure
        return Structure.from_dict(s) if isinstance(s, dict) else s.copy()

    def _grid(self) -> Any:
        from perovflow.analysis.potentials import read_potential

        pot = self.potential
        return read_potential(pot) if isinstance(pot, str | Path) else pot

    def planar_averages(self) -> dict[int, np.ndarray] | None:
        """Planar-averaged potential along a, b, c (eV), or None."""
        from perovflow.analysis.potentials import GridPotential

        pot = self._grid()
        if pot is None:
            return None
        if isinstance(pot, GridPotential):
            return pot.planar_averages()
        pot = pot.get("planar_averages_eV", pot)
        return {int(k): np.asarray(v, dtype=float) for k, v in pot.items()}

    def site_potentials(self) -> np.ndarray | None:
        """Potential at each atomic site (eV; Gaussian average, :mod:`perovflow.grids`)."""
        from perovflow.analysis.potentials import GridPotential
        from perovflow.grids import site_averages

        pot = self._grid()
        if isinstance(pot, GridPotential):
            s = self.get_structure()
            return site_averages(pot.data, s.lattice.matrix, s.frac_coords)
        if isinstance(pot, dict) and pot.get("site_potentials_eV") is not None:
            return np.asarray(pot["site_potentials_eV"], dtype=float)
        return None


def check_cells(bulk: Any, defect: Any, tol: float = 0.02, max_diff: int = 4) -> None:
    """Raise a one-line error when a defect cell does not match the bulk supercell."""
    lb, ld = bulk.lattice, defect.lattice
    if not np.allclose(lb.abc, ld.abc, rtol=tol) or not np.allclose(lb.angles, ld.angles, atol=1.0):
        raise InputError(
            f"defect cell {np.round(ld.abc, 3).tolist()} Å does not match the bulk supercell "
            f"{np.round(lb.abc, 3).tolist()} Å",
            "compute the bulk reference in the same supercell as the defect",
        )
    if abs(len(bulk) - len(defect)) > max_diff:
        raise InputError(
            f"defect cell has {len(defect)} atoms but the bulk supercell {len(bulk)}",
            "compare a defect with the bulk supercell it was cut from",
        )


def locate_defect(bulk: Any, defect: Any) -> tuple[str, int, np.ndarray]:
    """Kind, site index and fractional position of a point defect by matching sites.

    Returns ``("vacancy", bulk index, fpos)``, ``("interstitial", defect index, fpos)`` or
    ``("substitution", defect index, fpos)``. The sites of both cells are matched by
    species and periodic distance (pymatgen's DefectSiteFinder needs the optional dscribe
    package, so this simpler geometric match is used).
    """
    dist = bulk.lattice.get_all_distances(bulk.frac_coords, defect.frac_coords)
    sb = np.array([s.specie.symbol for s in bulk])
    sd = np.array([s.specie.symbol for s in defect])
    same = sb[:, None] == sd[None, :]
    if len(defect) < len(bulk):
        i = int(np.argmax(np.where(same, dist, np.inf).min(axis=1)))
        return "vacancy", i, bulk[i].frac_coords
    if len(defect) > len(bulk):
        j = int(np.argmax(np.where(same, dist, np.inf).min(axis=0)))
        return "interstitial", j, defect[j].frac_coords
    nearest = dist.argmin(axis=0)
    changed = np.flatnonzero(sb[nearest] != sd)
    if changed.size != 1:
        raise InputError(
            f"the defect cell differs from the bulk at {changed.size} sites",
            "compare cells with one point defect (same supercell, same atom order not needed)",
        )
    j = int(changed[0])
    return "substitution", j, bulk[int(nearest[j])].frac_coords


def make_defect(bulk: Any, defect: Any) -> tuple[Any, np.ndarray]:
    """The pymatgen Defect object and fractional defect position from two structures."""
    from pymatgen.analysis.defects.core import Interstitial, Substitution, Vacancy
    from pymatgen.core import PeriodicSite

    kind, idx, fpos = locate_defect(bulk, defect)
    if kind == "vacancy":
        return Vacancy(bulk, bulk[idx]), np.asarray(fpos)
    site = PeriodicSite(defect[idx].specie, fpos, bulk.lattice)
    cls = Interstitial if kind == "interstitial" else Substitution
    return cls(bulk, site), np.asarray(fpos)


@dataclass
class FormationResult:
    """Formation energies of one defect in several charge states."""

    defect: str
    vbm_eV: float
    band_gap_eV: float
    entries: list[dict[str, Any]]
    limits: list[dict[str, Any]]
    transition_levels: list[dict[str, Any]]
    envelope: dict[str, list[tuple[float, float]]]
    meta: dict[str, Any] = field(default_factory=dict)
    uncorrected: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready dict (``uncorrected``: limits, levels and envelope without corrections)."""
        return {
            "defect": self.defect,
            "vbm_eV": self.vbm_eV,
            "band_gap_eV": self.band_gap_eV,
            "entries": self.entries,
            "limits": self.limits,
            "transition_levels": self.transition_levels,
            "envelope": {k: [list(p) for p in v] for k, v in self.envelope.items()},
            "meta": self.meta,
            "uncorrected": self.uncorrected,
        }

    to_dict = summary


def as_entries(phases: Any) -> list[Any]:
    """Competing phases as pymatgen entries (a dict formula -> total energy per formula also works)."""
    from pymatgen.core import Composition
    from pymatgen.entries.computed_entries import ComputedEntry

    if isinstance(phases, dict):
        return [ComputedEntry(Composition(f), float(e), entry_id=f) for f, e in phases.items()]
    return list(phases)


def formation_energies(
    bulk: CellCalc,
    defects: list[CellCalc],
    phases: Any,
    vbm_eV: float,
    band_gap_eV: float,
    dielectric: float | np.ndarray | None = None,
    correction: str | None = "freysoldt",
) -> FormationResult:
    """Formation energy vs Fermi level of one defect in its charge states.

    Parameters
    ----------
    bulk, defects
        The pristine supercell and the defect cells (same supercell, one defect type,
        distinct charges).
    phases
        Competing phases incl. the elements (pymatgen entries, or formula -> energy in eV per
        formula unit), computed with the same code and settings as the supercells.
    vbm_eV, band_gap_eV
        Bulk VBM (absolute, eV) and gap: the Fermi-level range.
    dielectric
        Scalar or 3x3 tensor (needed to correct charged cells).
    correction
        ``freysoldt``, ``efnv``, ``auto`` (eFNV for an anisotropic ε, else Freysoldt) or
        None (uncorrected). The uncorrected results are always given beside
        (``uncorrected``).
    """
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    if not defects:
        raise InputError("no defect calculation given", "give at least one charge state")
    scheme = choose_scheme(correction, dielectric) if dielectric is not None else correction
    bulk_entry = ComputedStructureEntry(bulk.get_structure(), bulk.energy_eV)
    defect, entries, bare, rows = _cells(bulk, bulk_entry, defects, dielectric, scheme)
    result = _collect(_diagram(entries, phases, vbm_eV, band_gap_eV, bulk_entry),
                      defect, rows, vbm_eV, band_gap_eV)  # fmt: skip
    plain = _collect(_diagram(bare, phases, vbm_eV, band_gap_eV, bulk_entry),
                     defect, rows, vbm_eV, band_gap_eV)  # fmt: skip
    result.uncorrected = {
        "limits": plain.limits,
        "transition_levels": plain.transition_levels,
        "envelope": {k: [list(p) for p in v] for k, v in plain.envelope.items()},
    }
    result.meta.update({"correction": scheme, "dielectric": _tensor(dielectric)})
    return result


def _cells(
    bulk: CellCalc, bulk_entry: Any, defects: list[CellCalc], dielectric: Any, scheme: str | None
) -> tuple[Any, list, list, list[dict[str, Any]]]:
    """The defect, its DefectEntries corrected and bare, and the report rows of all cells.

    Every cell must hold the same defect, each in a charge state of its own.
    """
    entries, bare, rows = [], [], []
    defect = None
    for calc in defects:
        this, pair, row = _one_cell(bulk, bulk_entry, calc, dielectric, scheme)
        if defect is not None and this.name != defect.name:
            raise InputError(
                f"{this.name} and {defect.name} are different defects",
                "analyse one defect type at a time",
            )
        defect = this
        entries.append(pair[0])
        bare.append(pair[1])
        rows.append(row)
    charges = [r["charge"] for r in rows]
    if len(set(charges)) != len(charges):
        raise InputError(f"charge states repeat: {charges}", "give each charge state once")
    return defect, entries, bare, rows


def _one_cell(
    bulk: CellCalc, bulk_entry: Any, calc: CellCalc, dielectric: Any, scheme: str | None
) -> tuple[Any, tuple[Any, Any], dict[str, Any]]:
    """The defect, its DefectEntry corrected and bare, and its report row."""
    from pymatgen.analysis.defects.thermo import DefectEntry
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    ds = calc.get_structure()
    check_cells(bulk_entry.structure, ds)
    this, fpos = make_defect(bulk_entry.structure, ds)
    corr, shift, info = _correct(bulk, calc, dielectric, fpos, scheme)
    pair = tuple(
        DefectEntry(defect=this, charge_state=int(calc.charge),
                    sc_entry=ComputedStructureEntry(ds, calc.energy_eV),
                    sc_defect_frac_coords=tuple(fpos), bulk_entry=bulk_entry, corrections=terms)
        for terms in ({scheme: corr} if corr else {}, {})
    )  # fmt: skip
    row = {
        "label": calc.label or this.name, "charge": int(calc.charge),
        "energy_eV": calc.energy_eV, "correction_eV": corr,
        "correction_scheme": scheme if corr else None, "alignment_shift_eV": shift,
        "correction_terms": info, "defect_frac_coords": [round(float(x), 5) for x in fpos],
        "provenance": calc.provenance,
    }  # fmt: skip
    return this, pair, row


def _tensor(dielectric: Any) -> list[list[float]] | None:
    from perovflow.analysis.ewald import dielectric_tensor

    return None if dielectric is None else dielectric_tensor(dielectric).tolist()


def _correct(
    bulk: CellCalc, calc: CellCalc, dielectric: Any, fpos: np.ndarray, scheme: str | None
) -> tuple[float, float, dict[str, Any]]:
    """(correction, far-field shift, terms) of one cell under ``scheme``; neutral: none."""
    if scheme not in (None, "freysoldt", "efnv", "auto"):
        raise InputError(f"unknown correction {scheme!r}", "use freysoldt, efnv, auto or None")
    if scheme is None or calc.charge == 0:
        return 0.0, 0.0, {}
    if dielectric is None:
        raise InputError(
            f"the {scheme} correction needs the dielectric constant",
            "pass dielectric (scalar or 3x3 tensor), or correction=None",
        )
    return (efnv if scheme == "efnv" else freysoldt)(bulk, calc, dielectric, fpos)


def _diagram(entries: list, phases: Any, vbm: float, gap: float, bulk_entry: Any) -> Any:
    from pymatgen.analysis.defects.thermo import FormationEnergyDiagram

    try:
        return FormationEnergyDiagram(
            entries, as_entries(phases), vbm=vbm, band_gap=gap, bulk_entry=bulk_entry
        )
    except (ValueError, KeyError) as exc:
        raise InputError(
            f"chemical-potential limits cannot be built ({exc})",
            "include every element and the host's competing phases, from the same settings",
        ) from exc


def _collect(fed: Any, defect: Any, rows: list, vbm: float, gap: float) -> FormationResult:
    limits, envelope = [], {}
    for i, (mu, comp) in enumerate(zip(fed.chempot_limits, fed.competing_phases, strict=True)):
        name = "+".join(sorted(comp)) or f"limit {i + 1}"
        lines = fed._get_lines(mu)
        limits.append(
            {
                "name": name,
                "dmu_eV": {str(el): float(v) for el, v in mu.items()},
                "formation_at_vbm_eV": {int(m): float(b) for m, b in lines},
            }
        )
        envelope[name] = [(float(x), float(y)) for x, y in fed.get_transitions(mu, 0.0, gap)]
    levels = transition_levels(limits[0]["formation_at_vbm_eV"], gap) if limits else []
    return FormationResult(
        defect=defect.name, vbm_eV=vbm, band_gap_eV=gap, entries=rows, limits=limits,
        transition_levels=levels, envelope=envelope,
        meta={"multiplicity": int(getattr(defect, "multiplicity", 1))},
    )  # fmt: skip


def transition_levels(lines: dict[int, float], gap: float) -> list[dict[str, Any]]:
    """Thermodynamic transition levels eps(q/q') (eV above the VBM) of the lower envelope.

    ``lines`` maps charge -> formation energy at E_F = 0 (slope = charge). Levels do not
    depend on the chemical potentials.
    """
    from pymatgen.analysis.defects.thermo import get_lower_envelope, get_transitions

    pts = get_transitions(get_lower_envelope([(float(q), b) for q, b in lines.items()]), -50, 50)
    out = []
    for x, _ in pts[1:-1]:
        left = min(lines, key=lambda q: lines[q] + q * (x - 1e-6))
        right = min(lines, key=lambda q: lines[q] + q * (x + 1e-6))
        out.append(
            {
                "q1": int(left),
                "q2": int(right),
                "level_eV": float(x),
                "in_gap": bool(0.0 <= x <= gap),
            }
        )
    return out
