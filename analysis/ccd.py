"""Configuration-coordinate diagram (CCD) of a defect between two charge states.

Input: the static energies of each charge state along the straight line between the two
relaxed geometries (atomate2's ``spawn_energy_curve_calcs`` outputs, or any list of
``{"structure", "energy"}``) at fractions ``d`` of the way (``d = 0`` its own minimum,
``d = 1`` the other state's minimum). With ΔQ the mass-weighted distance between the
minima (:func:`pymatgen.analysis.defects.ccd.get_dQ`, amu^½ Å), state 1 sits at
``Q = d ΔQ`` and state 2 at ``Q = (1 - d) ΔQ``.

Both curves are compared at the same electron count: a state of charge ``q`` gets
``q μ`` added, with ``μ`` the electron reservoir (e.g. the VBM: the electron of the
neutral centre recombines with a hole at the VBM). The *ground* state is the lower minimum.

* absorption = E_exc(Q_gnd) - E_gnd(Q_gnd); emission = E_exc(Q_exc) - E_gnd(Q_exc);
* Franck–Condon shifts d_FC: E_s(Q of the other minimum) - E_s(own minimum), from the
  computed ``d = 1`` points; the Stokes shift = absorption - emission = d_FC(gnd) + d_FC(exc);
* ħΩ from ``E - E0 = ½ Ω² (Q - Q0)²`` fitted (least squares, minimum fixed) to the points
  with ``|d| <= fit_window``; Huang–Rhys factor S = d_FC / ħΩ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from perovflow.errors import InputError


def hbar_omega_eV(curvature: float) -> float:
    """ħΩ (eV) of ``E = a Q²`` (``a`` in eV/(amu Å²)): Ω = sqrt(2a) in ASE's time unit."""
    from ase import units

    hbar = units._hbar * units.J * units.s  # eV x (Å sqrt(amu/eV))
    return float(hbar * np.sqrt(2.0 * curvature)) if curvature > 0 else float("nan")


def _fit_curvature(q: np.ndarray, e: np.ndarray, q0: float, e0: float) -> float:
    """Least-squares ``a`` of ``e - e0 = a (q - q0)²`` (closed form)."""
    x2 = (q - q0) ** 2
    return float(np.sum(x2 * (e - e0)) / np.sum(x2**2))


def _curve(
    distortions: list[float], energies: list[float], charge: int, shift: float,
    delta_q: float, first: bool, fit_window: float,
) -> dict[str, Any]:  # fmt: skip
    d = np.asarray(distortions, dtype=float)
    e = np.asarray(energies, dtype=float) + charge * shift
    for need in (0.0, 1.0):
        if not np.any(np.isclose(d, need)):
            raise InputError(
                f"the q={charge:+d} curve has no point at distortion {need:g}",
                "include 0 (own minimum) and 1 (the other minimum) in the distortions",
            )
    q = d * delta_q if first else (1.0 - d) * delta_q
    e0, e1 = float(e[np.isclose(d, 0.0)][0]), float(e[np.isclose(d, 1.0)][0])
    near = (np.abs(d) <= fit_window + 1e-9) & ~np.isclose(d, 0.0)
    if not near.any():
        raise InputError(
            f"no distortion of the q={charge:+d} curve within ±{fit_window:g} of its minimum",
            "add small distortions (e.g. ±0.1, ±0.2) for the phonon-energy fit",
        )
    q0 = 0.0 if first else delta_q
    a = _fit_curvature(q[near], e[near], q0, e0)
    omega = hbar_omega_eV(a)
    d_fc = e1 - e0
    order = np.argsort(q)
    return {
        "charge": charge, "Q": q[order].tolist(), "energy_eV": e[order].tolist(),
        "distortions": d[order].tolist(), "Q_min": q0, "E_min_eV": e0,
        "E_at_other_min_eV": e1, "d_FC_eV": d_fc, "curvature_eV_per_amu_A2": a,
        "hbar_omega_eV": omega, "huang_rhys": d_fc / omega if omega > 0 else None,
        "d_FC_harmonic_eV": a * delta_q**2,
    }  # fmt: skip


def ccd_from_points(
    points1: list[dict[str, Any]],
    points2: list[dict[str, Any]],
    charges: tuple[int, int],
    distortions: list[float],
    reservoir_eV: float = 0.0,
    fit_window: float = 0.25,
) -> dict[str, Any]:
    """The CCD numbers of two charge states (see the module docstring).

    Parameters
    ----------
    points1, points2
        Per distortion (same order as ``distortions``): ``{"structure", "energy"}`` (eV) of
        state 1 (charge ``charges[0]``) and state 2; ``d = 0`` is each state's own minimum.
    charges
        (q1, q2).
    distortions
        Fractions of the way to the other minimum.
    reservoir_eV
        Electron reservoir μ (eV) added ``q`` times to the energy of charge ``q``.
    fit_window
        Largest ``|d|`` used in the ħΩ fit.
    """
    from pymatgen.analysis.defects.ccd import get_dQ
    from pymatgen.core import Structure

    def structure_at(points: list[dict[str, Any]], d: float) -> Any:
        hit = [p for p, x in zip(points, distortions, strict=True) if np.isclose(x, d)]
        if not hit:
            raise InputError(f"no structure at distortion {d:g}", "include 0 and 1")
        s = hit[0]["structure"]
        return s if isinstance(s, Structure) else Structure.from_dict(s)

    delta_q = float(get_dQ(structure_at(points1, 0.0), structure_at(points2, 0.0)))
    if delta_q < 1e-6:
        raise InputError(
            "ΔQ = 0: both charge states relaxed to the same geometry",
            "use an engine that sees the charge (QE/CP2K); an ML potential ignores it",
        )
    q1, q2 = charges
    args = (reservoir_eV, delta_q)
    c1 = _curve(distortions, [p["energy"] for p in points1], q1, *args, True, fit_window)
    c2 = _curve(distortions, [p["energy"] for p in points2], q2, *args, False, fit_window)
    gnd, exc = (c1, c2) if c1["E_min_eV"] <= c2["E_min_eV"] else (c2, c1)
    absorption = exc["E_at_other_min_eV"] - gnd["E_min_eV"]
    emission = exc["E_min_eV"] - gnd["E_at_other_min_eV"]
    return {
        "charges": [q1, q2], "ground_charge": gnd["charge"], "excited_charge": exc["charge"],
        "delta_Q_amu05_A": delta_q, "reservoir_eV": reservoir_eV,
        "zpl_eV": exc["E_min_eV"] - gnd["E_min_eV"], "absorption_eV": absorption,
        "emission_eV": emission, "stokes_shift_eV": absorption - emission,
        "d_FC_ground_eV": gnd["d_FC_eV"], "d_FC_excited_eV": exc["d_FC_eV"],
        "hbar_omega_ground_eV": gnd["hbar_omega_eV"], "hbar_omega_excited_eV": exc["hbar_omega_eV"],
        "curves": [c1, c2],
    }  # fmt: skip


def _parabola(curve: dict[str, Any], q: np.ndarray) -> np.ndarray:
    return curve["curvature_eV_per_amu_A2"] * (q - curve["Q_min"]) ** 2 + curve["E_min_eV"]


def plot_ccd(result: dict[str, Any], path: str | Path) -> Path:
    """Both curves (points and fitted parabolas) with the vertical transitions; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {c["charge"]: c for c in result["curves"]}
    gnd, exc = curves[result["ground_charge"]], curves[result["excited_charge"]]
    ref = gnd["E_min_eV"]
    dq = result["delta_Q_amu05_A"]
    grid = np.linspace(-0.3 * dq, 1.3 * dq, 200)
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for curve, color in ((gnd, "tab:blue"), (exc, "tab:red")):
        label = f"q={curve['charge']:+d} (ħΩ={curve['hbar_omega_eV'] * 1e3:.1f} meV)"
        ax.plot(grid, _parabola(curve, grid) - ref, color=color, label=label)
        ax.plot(curve["Q"], np.asarray(curve["energy_eV"]) - ref, "o", color=color)
    for q0, lo, hi, name, color in (
        (gnd["Q_min"], gnd["E_min_eV"], exc["E_at_other_min_eV"], "abs", "tab:purple"),
        (exc["Q_min"], gnd["E_at_other_min_eV"], exc["E_min_eV"], "em", "tab:green"),
    ):
        ax.annotate("", xy=(q0, (hi if name == "abs" else lo) - ref),
                    xytext=(q0, (lo if name == "abs" else hi) - ref),
                    arrowprops={"arrowstyle": "->", "color": color, "lw": 1.5})  # fmt: skip
        ax.text(q0, (lo + hi) / 2 - ref, f" {name} {hi - lo:.2f} eV", color=color, va="center")
    ax.set_xlabel("Q (amu$^{1/2}$ Å)")
    ax.set_ylabel("energy (eV, from the ground-state minimum)")
    ax.set_title(f"ΔQ = {dq:.2f} amu$^{{1/2}}$ Å, Stokes shift {result['stokes_shift_eV']:.2f} eV")
    ax.legend(loc="upper center", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


def ccd_answer(result: dict[str, Any]) -> str:
    """The report's one-sentence answer."""
    return (
        f"q={result['excited_charge']:+d} -> q={result['ground_charge']:+d}: emission "
        f"{result['emission_eV']:.2f} eV, absorption {result['absorption_eV']:.2f} eV, Stokes "
        f"shift {result['stokes_shift_eV']:.3f} eV (ΔQ = {result['delta_Q_amu05_A']:.2f} "
        "amu^½ Å)."
    )


def write_ccd_report(result: dict[str, Any], out_dir: str | Path, title: str) -> dict[str, Path]:
    """``report.md``/``report.html``/``results.json`` with the CCD numbers and ``ccd.png``."""
    from perovflow.analysis.report import section, write_report

    figure = plot_ccd(result, Path(out_dir) / "ccd.png")
    summary = {k: v for k, v in result.items() if k not in ("curves", "figure", "charges")}
    rows = [
        {k: c[k] for k in ("charge", "E_min_eV", "d_FC_eV", "hbar_omega_eV", "huang_rhys",
                           "d_FC_harmonic_eV")}
        for c in result["curves"]
    ]  # fmt: skip
    sec = section(summary, title, plots=[figure], kind="ccd",
                  provenance=result.get("provenance") or "ccd flow")  # fmt: skip
    sec["rows"] = rows
    return write_report([sec], out_dir, title=title, answer=ccd_answer(result))
