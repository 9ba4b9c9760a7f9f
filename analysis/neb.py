"""NEB analysis: barriers forward/back, the transition-state image and a force-informed spline.

The energy profile is ASE's force-curve fit (``ase.mep.NEBTools``): a cubic spline through
the image energies whose slopes are the image forces projected on the path tangent, the
same construction as ``ase.utils.forcecurve.fit_raw``. Barriers come from the fitted
maximum (``fit=True``, the default) or from the raw image energies.

Sources: ASE images with energies and forces (a list, or a trajectory/extxyz file with the
final band), a stored document ``{"images": [{"numbers", "positions", "cell", "pbc",
"energy", "forces"}, ...]}``, or a QE ``neb.x`` folder: the ``<prefix>.path`` restart file
holds per image the energy (Hartree), the positions (bohr) and the energy gradient
(Hartree/bohr).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
from ase.units import Bohr, Hartree

from perovflow.analysis.neb_result import EV_TO_KCAL_MOL, NEBResult
from perovflow.errors import InputError

__all__ = [
    "EV_TO_KCAL_MOL",
    "NEBResult",
    "analyze_neb",
    "load_images",
    "neb_section",
    "plot_neb",
    "profile_rows",
    "read_qe_path_file",
]

HARTREE_EV = Hartree
BOHR_A = Bohr


def read_qe_path_file(path: str | Path, symbols: list[str] | None = None) -> list[Any]:
    """Images from a QE ``neb.x`` ``<prefix>.path`` file (energies/forces converted to eV, Å).

    Raises
    ------
    InputError
        If the file is truncated or not a .path file.
    """
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from monty.io import zopen

    if not Path(path).is_file():
        raise InputError(f"file {path} does not exist", "give the path of an existing .path file")
    with zopen(str(path), "rt", errors="replace") as fh:
        lines = fh.read().splitlines()
    try:
        nim = int(lines[lines.index("NUMBER OF IMAGES") + 1].split()[0])
        cursor = lines.index("ENERGIES, POSITIONS AND GRADIENTS") + 1
        starts = [i for i in range(cursor, len(lines)) if lines[i].lstrip().startswith("Image:")]
        if len(starts) != nim:
            raise ValueError(f"{len(starts)} of {nim} images present")
        nat = (starts[1] - starts[0] - 2) if nim > 1 else len(lines) - starts[0] - 2
        images = []
        for s in starts:
            energy = float(lines[s + 1].split()[0]) * HARTREE_EV
            rows = np.array([lines[s + 2 + a].split()[:6] for a in range(nat)], dtype=float)
            if rows.shape != (nat, 6):
                raise ValueError("short image block")
            atoms = Atoms(symbols or ["X"] * nat, positions=rows[:, :3] * BOHR_A)
            forces = -rows[:, 3:6] * HARTREE_EV / BOHR_A
            atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
            images.append(atoms)
    except (ValueError, IndexError) as exc:
        raise InputError(
            f"{Path(path).name} is not a complete neb.x .path file ({exc})",
            "give the <prefix>.path file of a finished (or restarted) neb.x run",
        ) from exc
    return images


def _images_from_dict(data: dict[str, Any]) -> list[Any]:
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    images = []
    for im in data.get("images", []):
        atoms = Atoms(
            numbers=im["numbers"],
            positions=im["positions"],
            cell=im.get("cell"),
            pbc=im.get("pbc", False),
        )
        atoms.calc = SinglePointCalculator(atoms, energy=im["energy"], forces=im.get("forces"))
        images.append(atoms)
    return images


def load_images(source: Any, nimages: int | None = None) -> list[Any]:
    """NEB images (ASE Atoms with energy and forces) from any supported source.

    Parameters
    ----------
    source
        list of Atoms, a ``{"images": [...]}`` dict, a trajectory/extxyz file, or a folder
        holding a neb.x ``*.path`` file (or one trajectory file).
    nimages
        For a trajectory of a whole optimisation: the number of images of one band (the
        last ``nimages`` frames are used).
    """
    if isinstance(source, dict):
        images = _images_from_dict(source)
    elif isinstance(source, list | tuple):
        images = list(source)
    else:
        path = Path(source)
        if path.is_dir():
            found = sorted(path.glob("*.path")) or sorted(
                p for p in path.iterdir() if p.suffix in (".traj", ".extxyz", ".xyz")
            )
            if not found:
                raise InputError(f"no NEB result in {path}", "give a *.path or trajectory file")
            path = found[0]
        if path.suffix == ".path" or path.name.endswith(".path.gz"):
            images = read_qe_path_file(path)
        else:
            images = _read_trajectory(path)
    if nimages:
        images = images[-nimages:]
    if len(images) < 3:
        raise InputError(
            f"an NEB path needs at least 3 images, got {len(images)}",
            "give the full band (initial, intermediate and final images)",
        )
    return images


def _read_trajectory(path: Path) -> list[Any]:
    from ase.io import read

    if not path.is_file():
        raise InputError(f"file {path} does not exist", "give an existing trajectory")
    try:
        images = read(str(path), index=":")
    except Exception as exc:
        raise InputError(
            f"cannot read images from {path.name} ({type(exc).__name__})",
            "give an ASE trajectory or extxyz file with energies and forces",
        ) from exc
    return images


def _check_results(images: list[Any]) -> tuple[np.ndarray, bool]:
    energies = []
    have_forces = True
    for i, atoms in enumerate(images):
        try:
            energies.append(float(atoms.get_potential_energy()))
        except Exception as exc:
            raise InputError(
                f"NEB image {i} has no energy", "give images from a finished NEB run"
            ) from exc
        try:
            f = atoms.get_forces()
            have_forces &= f is not None and np.all(np.isfinite(f))
        except Exception:
            have_forces = False
    if len({len(a) for a in images}) != 1:
        raise InputError("NEB images have different numbers of atoms", "give one consistent band")
    return np.array(energies), have_forces


def _profile(images: list[Any], energies: np.ndarray, have_forces: bool) -> tuple[np.ndarray, ...]:
    """(path, relative energies, spline path, spline energies) along the band."""
    from ase.utils.forcecurve import fit_raw

    positions = [a.positions for a in images]
    if have_forces:
        forces = [a.get_forces() for a in images]
        ff = fit_raw(energies, forces, positions, images[0].cell, images[0].pbc)
        return ff.path, ff.energies, ff.fit_path, ff.fit_energies
    from scipy.interpolate import CubicSpline  # energies only: no tangent forces

    steps = [np.linalg.norm(b - a) for a, b in itertools.pairwise(positions)]
    s = np.concatenate([[0.0], np.cumsum(steps)])
    sfit = np.linspace(0, s[-1], 200)
    return s, energies - energies[0], sfit, CubicSpline(s, energies - energies[0])(sfit)


def analyze_neb(
    source: Any, nimages: int | None = None, fit: bool = True, refined: list[int] | None = None
) -> NEBResult:
    """Barriers (eV, kcal/mol), reaction energy, TS image and spline profile of an NEB path.

    Parameters
    ----------
    source
        Anything :func:`load_images` reads.
    nimages
        Number of images of one band in a whole-optimisation trajectory.
    fit
        Barrier from the spline maximum (True) or from the highest image.
    refined
        Only these image indices may set the barrier (the images converged on the expensive
        surface); the barrier is then the highest of their energies, never the spline's.
    """
    from ase.mep import NEBTools

    images = load_images(source, nimages)
    energies, have_forces = _check_results(images)
    s, e, sfit, efit = _profile(images, energies, have_forces)
    dE = float(e[-1])
    if refined is not None:
        ts = max(refined, key=lambda i: e[i])
        barrier, fit = float(e[ts]), False
    else:
        ts = int(np.argmax(e))
        barrier = float(e[ts])
        if fit and have_forces:
            barrier = float(NEBTools(images).get_barrier(fit=True, raw=False)[0])
        elif fit:
            barrier = float(np.max(efit))
    return NEBResult(
        barrier_forward_eV=barrier,
        barrier_backward_eV=barrier - dE,
        reaction_energy_eV=dE,
        ts_image=int(ts),
        image_energies_eV=[float(x) for x in e],
        path_A=[float(x) for x in s],
        fit_path_A=[float(x) for x in sfit],
        fit_energies_eV=[float(x) for x in efit],
        fitted=bool(fit),
        source=str(source) if not isinstance(source, list | tuple | dict) else "images",
        meta={"forces": have_forces},
        images=list(images),
        refined=None if refined is None else sorted(refined),
    )


def plot_neb(result: NEBResult, path: str | Path) -> Path:
    """Energy profile along the reaction coordinate: the spline, the images (open: not
    converged on the expensive surface) and the climbing image (the barrier's image)."""
    from perovflow.analysis.plots import new_figure, save_figure

    fig, ax = new_figure(5.0, 3.5)
    s, e = np.asarray(result.path_A), np.asarray(result.image_energies_eV)
    ax.plot(result.fit_path_A, result.fit_energies_eV, "-", color="C0", lw=1.2, label="spline")
    refined = set(range(len(e)) if result.refined is None else [0, len(e) - 1, *result.refined])
    on = np.array([i in refined for i in range(len(e))])
    ax.plot(s[on], e[on], "o", color="C0", label="images")
    if not on.all():
        ax.plot(s[~on], e[~on], "o", mfc="none", color="C0", label="not refined")
    ts = result.ts_image
    ax.plot([s[ts]], [e[ts]], "*", ms=12, color="C3", label="climbing image")
    ax.set_xlabel("reaction coordinate (Å)")
    ax.set_ylabel("E - E_initial (eV)")
    ax.set_title(
        f"Ea = {result.barrier_forward_eV:.3f} eV ({result.barrier_forward_kcal_mol:.1f} kcal/mol)"
    )
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def neb_section(output: dict[str, Any], title: str, provenance: Any, figdir: Path) -> dict:
    """Report section of a stored NEB job output (``{"summary", "images"}``): the barrier,
    convergence, end-point status and cost, with the energy-profile plot."""
    from perovflow.analysis.report import section

    summary = output.get("summary", {})
    res = analyze_neb({"images": output["images"]}, refined=summary.get("refined_images"))
    png = plot_neb(res, Path(figdir) / f"{title.split(':')[0].replace(' ', '_')}_neb.png")
    data = {**res.summary(), **{k: v for k, v in summary.items() if k not in res.summary()}}
    data["spline_max_eV"] = float(max(res.fit_energies_eV))
    for key in ("refined_images", "endpoints_converged", "endpoint_max_force_eV_A"):
        if isinstance(data.get(key), list):
            data[key] = ", ".join(str(v) for v in data[key])
    out = section(data, title, [png], provenance, kind="neb")
    out["rows"] = profile_rows(res)
    return out


def profile_rows(result: NEBResult) -> list[dict[str, Any]]:
    """The energy profile as table rows: image, reaction coordinate (Å), E - E_initial (eV)
    and its role (end point, climbing image, image, or not refined)."""
    last, refined = len(result.image_energies_eV) - 1, result.refined
    rows = []
    for i, (s, e) in enumerate(zip(result.path_A, result.image_energies_eV, strict=True)):
        if i in (0, last):
            role = "end point"
        elif i == result.ts_image:
            role = "climbing image"
        else:
            role = "image" if refined is None or i in refined else "not refined"
        rows.append({"image": i, "reaction_coordinate_A": s, "energy_above_initial_eV": e,
                     "role": role})  # fmt: skip
    return rows
