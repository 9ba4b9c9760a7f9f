"""Convergence series: plane-wave cutoff and k-point spacing, measured on one structure.

:func:`run_series` runs one static calculation per value (QE ``ecutwfc`` with ``ecutrho``
tied at ``dual`` times it; CP2K ``CUTOFF`` with ``REL_CUTOFF`` tied at ``CUTOFF / dual``; or
the k spacing of either code) and :func:`compare` reports each point against the most
converged one (the last value of the series): total energy per atom, forces, pressure and
band gap. The
structure is rattled (a fixed seed) so that forces are not zero by symmetry.
:func:`cheapest` picks the smallest value within given tolerances.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from perovflow.errors import InputError

RY_EV = 13.605693122994
PARAMETERS = ("ecutwfc", "kspacing")


def series_overrides(code: str, parameter: str, value: float, dual: float) -> dict[str, Any]:
    if parameter == "kspacing":
        return {"kspacing": float(value)}
    if code == "qe":
        return {"ecutwfc": float(value), "ecutrho": float(dual * value)}

    return {"cutoff_eV": float(value * RY_EV), "rel_cutoff_eV": float(value / dual * RY_EV)}


def rattled(structure: Any, amplitude_A: float, seed: int = 7) -> Any:
    """Copy of ``structure`` with every atom displaced by up to ``amplitude_A`` (fixed seed)."""
    out = structure.copy()
    rng = np.random.default_rng(seed)
    for i in range(len(out)):
        out.translate_sites([i], rng.uniform(-amplitude_A, amplitude_A, 3), frac_coords=False)
    return out


def run_series(
    structure: Any,
    code: str,
    parameter: str,
    values: list[float],
    directory: Path,
    *,
    protocol: str = "fast",
    dual: float = 4.0,
    fixed: dict[str, Any] | None = None,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """One static calculation per value of ``parameter``; returns one row per point.

    ``progress`` (a :class:`perovflow.progress.Progress`) is told each point and its folder.

    Parameters
    ----------
    parameter
        ``ecutwfc`` (Ry; QE: the wavefunction cutoff, the density cutoff ``dual`` times it;
        CP2K: ``CUTOFF``, with ``REL_CUTOFF`` tied at ``CUTOFF / dual``) or ``kspacing``
        (Å⁻¹).
    fixed
        Further overrides held fixed along the series (e.g. the cutoff of a k series).
    """
    if parameter not in PARAMETERS:
        raise InputError(f"unknown convergence parameter '{parameter}'", "use ecutwfc or kspacing")
    if code == "qe":
        from perovflow.engines.qe.jobs import QEStaticMaker as Maker
        from perovflow.engines.qe.jobs import run_qe_task as run
    elif code == "cp2k":
        from perovflow.engines.cp2k.jobs import CP2KStaticMaker as Maker
        from perovflow.engines.cp2k.jobs import run_cp2k_task as run
    else:
        raise InputError(f"no convergence series for code '{code}'", "use --code qe or cp2k")
    rows = []
    for value in values:
        overrides = {**(fixed or {}), **series_overrides(code, parameter, value, dual)}
        if code == "qe":  # pw.x prints no eigenvalues beyond 100 k-points unless verbose
            overrides.setdefault("control.verbosity", "high")
        folder = Path(directory) / f"{parameter}_{value:g}"
        folder.mkdir(parents=True, exist_ok=True)
        maker = Maker(protocol=protocol, input_set_overrides=overrides)
        if progress is not None:
            progress.job(f"{parameter} = {value:g}")
            progress.folder = folder
        rows.append(_row(parameter, value, run(maker, structure, None, folder)))
        if progress is not None:
            progress.finished()
    return rows


def _row(parameter: str, value: float, doc: Any) -> dict[str, Any]:
    stress = None if doc.stress_GPa is None else np.asarray(doc.stress_GPa)
    return {
        "parameter": parameter,
        "value": value,
        "energy_per_atom_eV": doc.energy_per_atom_eV,
        "forces": doc.forces_eV_per_A,
        "pressure_kbar": None if stress is None else float(-np.trace(stress) / 3 * 10),
        "gap_eV": doc.electronic.band_gap_eV,
        "walltime_s": doc.walltime_s,
    }


def compare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each point against the last (most converged) one: ΔE (meV/atom), largest force
    component difference (meV/Å), ΔP (kbar), Δgap (eV)."""
    ref = rows[-1]
    out = []
    for row in rows:
        force = None
        if row["forces"] is not None and ref["forces"] is not None:
            force = float(np.abs(np.subtract(row["forces"], ref["forces"])).max() * 1000)
        out.append(
            {
                "parameter": row["parameter"],
                "value": row["value"],
                "dE_meV_atom": round(
                    1000 * (row["energy_per_atom_eV"] - ref["energy_per_atom_eV"]), 3
                ),
                "dF_meV_A": None if force is None else round(force, 2),
                "dP_kbar": _delta(row["pressure_kbar"], ref["pressure_kbar"], 2),
                "dgap_eV": _delta(row["gap_eV"], ref["gap_eV"], 4),
                "walltime_s": None if row["walltime_s"] is None else round(row["walltime_s"], 1),
            }
        )
    return out


def _delta(a: float | None, b: float | None, digits: int) -> float | None:
    return None if a is None or b is None else round(a - b, digits)


def cheapest(table: list[dict[str, Any]], tolerances: dict[str, float]) -> float | None:
    """Smallest (cutoff) or largest (k spacing) value whose differences are all within
    ``tolerances`` (keys of :func:`compare`'s rows, absolute values), the reference excluded."""
    ok = [
        row["value"]
        for row in table[:-1]
        if all(row.get(k) is not None and abs(row[k]) <= tol for k, tol in tolerances.items())
    ]
    if not ok:
        return None
    return max(ok) if table[0]["parameter"] == "kspacing" else min(ok)


def plot(table: list[dict[str, Any]], path: Path) -> Path:
    """ΔE, ΔF and ΔP against the value of the series, one panel each (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [row["value"] for row in table[:-1]]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, key, label in zip(axes, ("dE_meV_atom", "dF_meV_A", "dP_kbar"),
                              ("|ΔE| (meV/atom)", "|ΔF| (meV/Å)", "|ΔP| (kbar)"), strict=True):  # fmt: skip
        y = [abs(row[key]) if row[key] is not None else np.nan for row in table[:-1]]
        ax.semilogy(x, np.maximum(y, 1e-4), "o-")
        ax.set_xlabel(table[0]["parameter"])
        ax.set_ylabel(label)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
