"""Finite-size corrections of charged defect cells: Freysoldt (FNV) and Kumagai (eFNV).

Both compare the electrostatic potential of the defect cell with the bulk supercell's
(potential energy of an electron, eV: QE pp.x ``plot_num=11``, CP2K ``V_HARTREE_CUBE``),
far from the defect, with the potential of a model charge ``q`` screened by the
dielectric tensor ε; the correction added to the defect cell's energy is::

    E_corr = E_iso - E_per  +  q ΔV,      ΔV = < V_defect - V_bulk - V_model >_far,

with ``E_iso - E_per`` the model charge's energy isolated minus in the periodic array
(positive: Makov–Payne's q²α_M/(2εL) at leading order).

* Freysoldt, Neugebauer & Van de Walle, PRL 102, 016402 (2009): a Gaussian model charge,
  planar averages along each lattice vector, ΔV from the planes farthest from the defect;
  through ``pymatgen.analysis.defects.corrections.freysoldt`` (a 3x3 ε is accepted: the
  full tensor for the lattice sum and each axis' model, the spherical average for the
  isolated charge, as sxdefectalign does).
* Kumagai & Oba, PRB 89, 195205 (2014) (eFNV): a point charge in the anisotropic medium
  (:mod:`perovflow.analysis.ewald`, ε kept whole), ΔV from the atomic-site potentials of
  the sites beyond the radius of the largest sphere inside the Wigner–Seitz cell. The
  library's ``kumagai`` module only wraps pydefect's VASP reader, so the scheme is written
  here on the site potentials of :func:`perovflow.grids.site_averages`.

Each function returns ``(correction_eV, far_field_shift_eV, metadata)``; the metadata hold
the terms and the data of the alignment plot (:func:`plot_alignment`). The far-field shift
also places a defect cell's Kohn–Sham levels in the bulk gap (:func:`defect_levels`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from perovflow.errors import InputError

#: relative spread of ε's eigenvalues above which ``auto`` picks eFNV (anisotropic)
ANISOTROPY = 0.05
#: sites this close (Å) to the eFNV sampling sphere count as outside it (rounding-proof)
ON_SPHERE_A = 1e-3


def _potentials(bulk: Any, defect: Any, need: str) -> tuple[Any, Any]:
    getter = "planar_averages" if need == "planar" else "site_potentials"
    pb, pd = getattr(bulk, getter)(), getattr(defect, getter)()
    if pb is None or pd is None:
        raise InputError(
            f"the {'Freysoldt' if need == 'planar' else 'eFNV'} correction of "
            f"{defect.label or 'the defect'} needs the potentials of the bulk and defect cells",
            "run pp.x plot_num=11 (QE) or V_HARTREE_CUBE (CP2K) for both "
            "(write_potential=True), or correction=None",
        )
    return pb, pd


def freysoldt(
    bulk: Any, defect: Any, dielectric: Any, fpos: np.ndarray, energy_cutoff: float = 520.0
) -> tuple[float, float, dict[str, Any]]:
    """Freysoldt correction (eV), far-field shift (eV) and metadata for one charged cell."""
    from pymatgen.analysis.defects.corrections.freysoldt import get_freysoldt_correction

    pb, pd = _potentials(bulk, defect, "planar")
    for ax in range(3):
        if len(pb[ax]) != len(pd[ax]):
            raise InputError(
                f"bulk and defect potentials use different grids along axis {ax} "
                f"({len(pb[ax])} vs {len(pd[ax])} points)",
                "use the same cutoff/FFT grid for the bulk and defect cells",
            )
    res = get_freysoldt_correction(
        q=int(defect.charge), dielectric=dielectric, defect_locpot=pd, bulk_locpot=pb,
        defect_frac_coords=fpos, lattice=defect.get_structure().lattice,
        energy_cutoff=energy_cutoff,
    )  # fmt: skip
    md = res.metadata
    plot = {
        str(ax): {
            "x_A": np.round(np.asarray(d["pot_plot_data"]["x"]), 4).tolist(),
            "dft_eV": np.round(np.asarray(d["pot_plot_data"]["dft_diff"]), 5).tolist(),
            "model_eV": np.round(np.asarray(d["pot_plot_data"]["Vr"]), 5).tolist(),
            "shift_eV": float(d["pot_plot_data"]["shift"]),
            "window": [int(i) for i in d["pot_plot_data"]["check"]],
        }
        for ax, d in md["plot_data"].items()
    }
    return (
        float(res.correction_energy),
        far_field_shift(pb, pd, fpos),
        {
            "scheme": "freysoldt",
            "electrostatic_eV": float(md["electrostatic"]),
            "potential_eV": float(md["potential"]),
            "alignments_eV": {int(k): float(v) for k, v in md["alignments"].items()},
            "plot": plot,
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


def matched_sites(bulk: Any, defect: Any) -> np.ndarray:
    """For each defect-cell site, the bulk site of the same species nearest to it."""
    dist = bulk.lattice.get_all_distances(defect.frac_coords, bulk.frac_coords)
    sb = np.array([s.specie.symbol for s in bulk])
    sd = np.array([s.specie.symbol for s in defect])
    return np.where(sd[:, None] == sb[None, :], dist, np.inf).argmin(axis=1)


def sampling_radius(lattice: Any) -> float:
    """Radius (Å) of the largest sphere inside the Wigner–Seitz cell: half the shortest
    lattice vector (the eFNV sampling region lies beyond it)."""
    from pymatgen.core import Lattice

    reduced = Lattice(lattice.matrix).get_lll_reduced_lattice()
    vectors = np.array([i * reduced.matrix[0] + j * reduced.matrix[1] + k * reduced.matrix[2]
                        for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
                        if (i, j, k) != (0, 0, 0)])  # fmt: skip
    return float(np.linalg.norm(vectors, axis=1).min() / 2)


def efnv(
    bulk: Any, defect: Any, dielectric: Any, fpos: np.ndarray
) -> tuple[float, float, dict[str, Any]]:
    """Kumagai–Oba (eFNV) correction (eV), far-field shift (eV) and metadata."""
    from perovflow.analysis.ewald import lattice_energy, point_charge_potential

    vb, vd = _potentials(bulk, defect, "site")
    bs, ds = bulk.get_structure(), defect.get_structure()
    q = float(defect.charge)
    pair = matched_sites(bs, ds)
    diff = np.asarray(vd, float) - np.asarray(vb, float)[pair]
    disp = ds.lattice.get_cartesian_coords(_wrapped(ds.frac_coords - fpos))
    dist = np.array([ds.lattice.get_distance_and_image(f, fpos)[0] for f in ds.frac_coords])
    model = -point_charge_potential(ds.lattice.matrix, dielectric, disp, q)  # electron PE
    radius = sampling_radius(ds.lattice)
    far = dist > radius - ON_SPHERE_A  # sites on the sphere count as outside it
    if not far.any():
        raise InputError(
            f"no atom of {defect.label or 'the defect cell'} lies beyond the sampling radius "
            f"{radius:.2f} Å",
            "use a larger supercell, or the Freysoldt correction",
        )
    shift = float(np.mean(diff[far] - model[far]))
    e_pc = -lattice_energy(ds.lattice.matrix, dielectric, q)
    return (
        e_pc + q * shift,
        float(np.mean(diff[far])),
        {
            "scheme": "efnv",
            "point_charge_eV": e_pc,
            "potential_eV": q * shift,
            "alignment_eV": shift,
            "sampling_radius_A": radius,
            "n_sampled": int(far.sum()),
            "plot": {
                "distance_A": np.round(dist, 4).tolist(),
                "dft_eV": np.round(diff, 5).tolist(),
                "model_eV": np.round(model, 5).tolist(),
                "sampled": far.tolist(),
            },
        },
    )


def _wrapped(frac: np.ndarray) -> np.ndarray:
    """Fractional displacements folded to [-0.5, 0.5)."""
    return (np.asarray(frac) + 0.5) % 1.0 - 0.5


def choose_scheme(requested: str | None, dielectric: Any) -> str | None:
    """The correction to apply: the user's ``freysoldt``/``efnv``/None wins; ``auto`` takes
    eFNV for an anisotropic ε (eigenvalues spread by more than 5 %), else Freysoldt."""
    if requested not in ("auto", "freysoldt", "efnv", None):
        raise InputError(f"unknown correction {requested!r}", "use auto, freysoldt, efnv or None")
    if requested != "auto":
        return requested
    from perovflow.analysis.ewald import dielectric_tensor

    eig = np.linalg.eigvalsh(dielectric_tensor(dielectric))
    return "efnv" if (eig.max() - eig.min()) / eig.mean() > ANISOTROPY else "freysoldt"


def plot_alignment(info: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """The potential-alignment plot of one correction: planar averages (Freysoldt) or site
    potentials against the distance from the defect (eFNV), DFT beside the model."""
    from perovflow.analysis.plots import new_figure, save_figure

    plot = info["plot"]
    if info["scheme"] == "efnv":
        fig, ax = new_figure(5.0, 3.6)
        d, dft, model = (np.asarray(plot[k]) for k in ("distance_A", "dft_eV", "model_eV"))
        ax.plot(d, dft, "o", ms=3, label="V_def - V_bulk (DFT)")
        ax.plot(d, model, "x", ms=3, label="point charge")
        ax.plot(d, dft - model, ".", ms=3, label="difference")
        ax.axvline(info["sampling_radius_A"], color="0.6", ls=":", label="sampling radius")
        ax.axhline(info["alignment_eV"], color="k", lw=0.6)
        ax.set_xlabel("distance from the defect (Å)")
    else:
        fig, axes = new_figure(9.0, 3.0, ncols=3)
        for ax_id, ax in zip(sorted(plot), axes, strict=True):
            p = plot[ax_id]
            x = np.asarray(p["x_A"])
            ax.plot(x, p["dft_eV"], "-", label="V_def - V_bulk")
            ax.plot(x, p["model_eV"], "--", label="model")
            lo, hi = p["window"]
            ax.axvspan(x[lo], x[min(hi, len(x) - 1)], color="0.9")
            ax.set_xlabel(f"along {'abc'[int(ax_id)]} from the defect (Å)")
        ax = axes[0]
    ax.set_ylabel("potential energy of an electron (eV)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6)
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
