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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perovflow.errors import InputError

EV_TO_KCAL_MOL = 23.0605
HARTREE_EV = 27.211386245988
BOHR_A = 0.529177210903


@dataclass
class NEBResult:
    """Barriers and the fitted energy profile of one NEB path."""

    barrier_forward_eV: float
    barrier_backward_eV: float
    reaction_energy_eV: float
    ts_image: int
    image_energies_eV: list[float]
    path_A: list[float]
    fit_path_A: list[float]
    fit_energies_eV: list[float]
    fitted: bool
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def barrier_forward_kcal_mol(self) -> float:
        """Forward barrier in kcal/mol (1 eV = 23.0605 kcal/mol)."""
        return self.barrier_forward_eV * EV_TO_KCAL_MOL

    @property
    def barrier_backward_kcal_mol(self) -> float:
        """Backward barrier in kcal/mol."""
        return self.barrier_backward_eV * EV_TO_KCAL_MOL

    def summary(self) -> dict[str, Any]:
        """Barriers in eV and kcal/mol, reaction energy and TS image."""
        return {
            "barrier_forward_eV": self.barrier_forward_eV,
            "barrier_backward_eV": self.barrier_backward_eV,
            "barrier_forward_kcal_mol": self.barrier_forward_kcal_mol,
            "barrier_backward_kcal_mol": self.barrier_backward_kcal_mol,
            "reaction_energy_eV": self.reaction_energy_eV,
            "ts_image": self.ts_image,
            "nimages": len(self.image_energies_eV),
            "fitted": self.fitted,
            "source": self.source,
        }

    def to_dict(self) -> dict[str, Any]:
        """Summary plus the raw and fitted profiles."""
        out = self.summary()
        out.update(
            {
                "image_energies_eV": self.image_energies_eV,
                "path_A": self.path_A,
                "fit_path_A": self.fit_path_A,
                "fit_energies_eV": self.fit_energies_eV,
            }
        )
        return out


def read_qe_path_file(path: str | Path, symbols: list[str] | None = None) -> list[Any]:
    """Images from a QE ``neb.x`` ``<prefix>.path`` file (energies/forces converted to eV, Å).

    Raises
    ------
    InputError
        If the file is truncated or not a .path file.
    """
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    from perovflow.engines.qe.projwfc import read_text

    lines = read_text(path).splitlines()
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


def analyze_neb(source: Any, nimages: int | None = None, fit: bool = True) -> NEBResult:
    """Barriers (eV, kcal/mol), reaction energy, TS image and spline profile of an NEB path."""
    from ase.mep import NEBTools
    from ase.utils.forcecurve import fit_raw

    images = load_images(source, nimages)
    energies, have_forces = _check_results(images)
    positions = [a.positions for a in images]
    if have_forces:
        ff = fit_raw(
            energies, [a.get_forces() for a in images], positions, images[0].cell, images[0].pbc
        )
        s, e, sfit, efit = ff.path, ff.energies, ff.fit_path, ff.fit_energies
        if fit:
            barrier, dE = NEBTools(images).get_barrier(fit=True, raw=False)
        else:
            barrier, dE = float(np.max(e)), float(e[-1])
    else:  # energies only: plain cubic spline on the path length, no tangent forces
        from scipy.interpolate import CubicSpline

        steps = [np.linalg.norm(b - a) for a, b in itertools.pairwise(positions)]
        s = np.concatenate([[0.0], np.cumsum(steps)])
        e = energies - energies[0]
        sfit = np.linspace(0, s[-1], 200)
        efit = CubicSpline(s, e)(sfit)
        barrier, dE = (float(efit.max()) if fit else float(e.max())), float(e[-1])
    ts = int(np.argmax(e))
    return NEBResult(
        barrier_forward_eV=float(barrier),
        barrier_backward_eV=float(barrier - dE),
        reaction_energy_eV=float(dE),
        ts_image=ts,
        image_energies_eV=[float(x) for x in e],
        path_A=[float(x) for x in s],
        fit_path_A=[float(x) for x in sfit],
        fit_energies_eV=[float(x) for x in efit],
        fitted=bool(fit and have_forces),
        source=str(source) if not isinstance(source, list | tuple | dict) else "images",
        meta={"forces": have_forces},
    )


def plot_neb(result: NEBResult, path: str | Path) -> Path:
    """Energy profile: images as points, the spline as a line, the TS marked."""
    from perovflow.analysis.plots import new_figure, save_figure

    fig, ax = new_figure(5.0, 3.5)
    ax.plot(result.fit_path_A, result.fit_energies_eV, "-", color="C0", lw=1.2)
    ax.plot(result.path_A, result.image_energies_eV, "o", color="C0")
    ts = result.ts_image
    ax.plot([result.path_A[ts]], [result.image_energies_eV[ts]], "*", ms=12, color="C3", label="TS")
    ax.set_xlabel("reaction coordinate (Å)")
    ax.set_ylabel("E - E_initial (eV)")
    ax.set_title(
        f"Ea = {result.barrier_forward_eV:.3f} eV ({result.barrier_forward_kcal_mol:.1f} kcal/mol)"
    )
    ax.legend(fontsize=8)
    return save_figure(fig, path)
