"""Defect formation energies, chemical-potential limits, finite-size corrections, levels.

    E_f(q, E_F) = E_def(q) - E_bulk - sum_i n_i (mu_i^0 + dmu_i) + q (E_VBM + E_F) + E_corr

What is used
------------
* pymatgen-analysis-defects ``FormationEnergyDiagram``: the chemical-potential limits of the
  host (vertices of its stability region among the competing phases given as pymatgen
  entries, e.g. CsBr, PbBr2, CsPbBr3, CsPb2Br5, Cs4PbBr6 and the elements), the formation
  energy lines and the thermodynamic transition levels (kinks of the lower envelope).
* Freysoldt correction (``pymatgen.analysis.defects.corrections.freysoldt``) from the
  planar-averaged potentials of the defect and bulk cells, read by
  :mod:`perovflow.analysis.potentials` (QE pp.x cube/filplot, CP2K V_HARTREE cube). A full
  3x3 dielectric tensor is accepted: the library treats anisotropy as sxdefectalign does
  (the full tensor for the periodic lattice sum and each axis' model potential, the
  spherical average for the isolated-charge term). The Kumagai (eFNV) scheme needs
  atomic-site potentials, which these readers do not produce, so it is not offered.
* Kohn–Sham defect levels: defect-cell states inside the host gap after aligning the
  defect cell's energies to the bulk by the potential alignment term.

Inputs are simple records (:class:`CellCalc`) so QE and CP2K results mix freely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perovflow.errors import InputError


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
        :class:`~perovflow.analysis.potentials.GridPotential`, or a file path to read.
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
        """The structure as a pymatgen Structure."""
        from pymatgen.core import Structure

        s = self.structure
        return Structure.from_dict(s) if isinstance(s, dict) else s

    def planar_averages(self) -> dict[int, np.ndarray] | None:
        """Planar-averaged potential along a, b, c (eV), or None."""
        from perovflow.analysis.potentials import GridPotential, read_potential

        pot = self.potential
        if pot is None:
            return None
        if isinstance(pot, str | Path):
            pot = read_potential(pot)
        if isinstance(pot, GridPotential):
            return pot.planar_averages()
        return {int(k): np.asarray(v, dtype=float) for k, v in pot.items()}


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


def freysoldt(
    bulk: CellCalc,
    defect: CellCalc,
    dielectric: float | np.ndarray,
    fpos: np.ndarray,
    energy_cutoff: float = 520.0,
) -> tuple[float, float, dict[str, Any]]:
    """Freysoldt correction (eV), potential alignment (eV) and metadata for one charged cell."""
    from pymatgen.analysis.defects.corrections.freysoldt import get_freysoldt_correction

    pb, pd = bulk.planar_averages(), defect.planar_averages()
    if pb is None or pd is None:
        raise InputError(
            f"the Freysoldt correction of {defect.label or 'the defect'} needs the potentials "
            "of the bulk and defect cells",
            "run pp.x plot_num=11 (QE) or V_HARTREE_CUBE (CP2K) for both, or corrections=None",
        )
    for ax in range(3):
        if len(pb[ax]) != len(pd[ax]):
            raise InputError(
                f"bulk and defect potentials use different grids along axis {ax} "
                f"({len(pb[ax])} vs {len(pd[ax])} points)",
                "use the same cutoff/FFT grid for the bulk and defect cells",
            )
    res = get_freysoldt_correction(
        q=int(defect.charge),
        dielectric=dielectric,
        defect_locpot=pd,
        bulk_locpot=pb,
        defect_frac_coords=fpos,
        lattice=defect.get_structure().lattice,
        energy_cutoff=energy_cutoff,
    )
    md = res.metadata
    return (
        float(res.correction_energy),
        far_field_shift(pb, pd, fpos),
        {
            "electrostatic_eV": float(md["electrostatic"]),
            "potential_eV": float(md["potential"]),
            "alignments_eV": {int(k): float(v) for k, v in md["alignments"].items()},
        },
    )


def far_field_shift(pb: dict, pd: dict, fpos: np.ndarray) -> float:
    """Mean of V_defect - V_bulk (eV) in the planes farthest from the defect (> 1/4 cell).

    This is the shift of the defect cell's energies relative to the bulk, used to place
    its Kohn–Sham levels in the bulk gap.
    """
    shifts = []
    for ax in range(3):
        diff = np.asarray(pd[ax]) - np.asarray(pb[ax])
        x = np.arange(diff.size) / diff.size
        d = np.abs((x - fpos[ax] + 0.5) % 1.0 - 0.5)
        shifts.append(float(diff[d >= 0.25].mean()))
    return float(np.mean(shifts))


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

    def summary(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "defect": self.defect,
            "vbm_eV": self.vbm_eV,
            "band_gap_eV": self.band_gap_eV,
            "entries": self.entries,
            "limits": self.limits,
            "transition_levels": self.transition_levels,
            "envelope": {k: [list(p) for p in v] for k, v in self.envelope.items()},
            "meta": self.meta,
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
        Scalar or 3x3 tensor (needed for the Freysoldt correction of charged cells).
    correction
        ``freysoldt`` or None (uncorrected).
    """
    from pymatgen.analysis.defects.thermo import DefectEntry, FormationEnergyDiagram
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    if not defects:
        raise InputError("no defect calculation given", "give at least one charge state")
    bs = bulk.get_structure()
    bulk_entry = ComputedStructureEntry(bs, bulk.energy_eV)
    entries, rows = [], []
    defect = None
    for calc in defects:
        ds = calc.get_structure()
        check_cells(bs, ds)
        this, fpos = make_defect(bs, ds)
        if defect is not None and this.name != defect.name:
            raise InputError(
                f"{this.name} and {defect.name} are different defects",
                "analyse one defect type at a time",
            )
        defect = this
        corr, shift, info = 0.0, 0.0, {}
        if correction == "freysoldt" and calc.charge != 0:
            if dielectric is None:
                raise InputError(
                    "the Freysoldt correction needs the dielectric constant",
                    "pass dielectric (scalar or 3x3 tensor), or correction=None",
                )
            corr, shift, info = freysoldt(bulk, calc, dielectric, fpos)
        elif correction not in (None, "freysoldt"):
            raise InputError(f"unknown correction {correction!r}", "use freysoldt or None")
        entry = DefectEntry(
            defect=this,
            charge_state=int(calc.charge),
            sc_entry=ComputedStructureEntry(ds, calc.energy_eV),
            sc_defect_frac_coords=tuple(fpos),
            bulk_entry=bulk_entry,
            corrections={"freysoldt": corr} if corr else {},
        )
        entries.append(entry)
        rows.append(
            {
                "label": calc.label or this.name,
                "charge": int(calc.charge),
                "energy_eV": calc.energy_eV,
                "correction_eV": corr,
                "alignment_shift_eV": shift,
                "correction_terms": info,
                "defect_frac_coords": [round(float(x), 5) for x in fpos],
                "provenance": calc.provenance,
            }
        )
    charges = [r["charge"] for r in rows]
    if len(set(charges)) != len(charges):
        raise InputError(f"charge states repeat: {charges}", "give each charge state once")
    try:
        fed = FormationEnergyDiagram(
            entries, as_entries(phases), vbm=vbm_eV, band_gap=band_gap_eV, bulk_entry=bulk_entry
        )
    except (ValueError, KeyError) as exc:
        raise InputError(
            f"chemical-potential limits cannot be built ({exc})",
            "include every element and the host's competing phases, from the same settings",
        ) from exc
    return _collect(fed, defect, rows, vbm_eV, band_gap_eV)


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
    return FormationResult(
        defect=defect.name,
        vbm_eV=vbm,
        band_gap_eV=gap,
        entries=rows,
        limits=limits,
        transition_levels=transition_levels(limits[0]["formation_at_vbm_eV"], gap)
        if limits
        else [],
        envelope=envelope,
        meta={"multiplicity": int(getattr(defect, "multiplicity", 1))},
    )


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


def plot_formation(result: FormationResult, path: str | Path) -> Path:
    """Formation energy vs Fermi level (lower envelope) for each chemical-potential limit."""
    from perovflow.analysis.plots import new_figure, save_figure

    fig, ax = new_figure(5.0, 3.8)
    for name, pts in result.envelope.items():
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, "-", label=name)
    ax.axvspan(0, result.band_gap_eV, color="0.95")
    ax.set_xlabel("E_F - VBM (eV)")
    ax.set_ylabel(f"E_f({result.defect}) (eV)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def defect_levels(
    proj: Any,
    bulk_vbm_eV: float,
    bulk_cbm_eV: float,
    shift_eV: float = 0.0,
    ipr_threshold: float | None = None,
) -> list[dict[str, Any]]:
    """Kohn–Sham states of a defect cell inside the bulk gap (after alignment).

    ``e_aligned = e - shift_eV`` with ``shift_eV`` the far-field potential shift of the
    defect cell (:func:`far_field_shift`); each level carries its IPR and occupation.
    """
    from perovflow.analysis.ipr import ipr_values

    e = proj.energies - shift_eV
    inside = np.flatnonzero((e > bulk_vbm_eV) & (e < bulk_cbm_eV))
    values = ipr_values(proj.weights[inside]) if inside.size else np.array([])
    occ = proj.occupations
    return [
        {
            "state": int(i),
            "energy_eV": float(e[i]),
            "above_vbm_eV": float(e[i] - bulk_vbm_eV),
            "below_cbm_eV": float(bulk_cbm_eV - e[i]),
            "ipr": float(v),
            "occupation": None if occ is None else float(occ[i]),
            "localized": None if ipr_threshold is None else bool(v > ipr_threshold),
        }
        for i, v in zip(inside, values, strict=True)
    ]
