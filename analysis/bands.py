"""Band structure analysis: gap, band edges, effective masses, plot along the k-path.

Sources: a pymatgen ``BandStructureSymmLine`` (or its ``as_dict()``, what task documents
store), or a pw.x ``bands``/``nscf`` output (``verbosity='high'`` beyond 100 k-points).
For pw.x outputs the k-points are labelled by matching them to the high-symmetry points of
pymatgen's ``HighSymmKpath`` for the structure; the occupied band count comes from the
number of electrons (2 per band, 1 with spin polarisation or spin–orbit coupling).

Effective masses: :mod:`perovflow.analysis.masses`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perovflow.analysis.masses import effective_masses
from perovflow.errors import InputError


@dataclass
class BandsResult:
    """Gap, band edges and effective masses of a band structure."""

    band_gap_eV: float
    is_direct: bool
    is_metal: bool
    vbm_eV: float | None
    cbm_eV: float | None
    vbm_kpoint: dict[str, Any] | None
    cbm_kpoint: dict[str, Any] | None
    direct_gap_eV: float | None
    direct_gap_kpoint: dict[str, Any] | None
    spin_polarized: bool
    effective_masses: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dict(self.__dict__)

    summary = to_dict


def _bs_from_pw_output(
    path: Path, structure: Any = None, nelec: float | None = None, labels: Any = None
):
    """Build a BandStructureSymmLine from a pw.x output file."""
    import io

    from ase.io.espresso import read_espresso_out
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.engines.qe.projwfc import read_pw_info, read_text

    text = read_text(path)
    if "Program PWSCF" not in text:
        raise InputError(f"{path.name} is not a pw.x output", "give the pw.x output of a bands run")
    try:
        atoms = list(
            read_espresso_out(io.StringIO(text), index=slice(None), results_required=False)
        )[-1]
        kpts = atoms.calc.kpts
    except Exception as exc:
        raise InputError(
            f"cannot read bands from {path.name} ({type(exc).__name__}: {exc})",
            "the output is truncated or the run had >100 k-points without verbosity='high'",
        ) from exc
    if not kpts or "JOB DONE" not in text:
        raise InputError(f"{path.name} has no complete band listing", "rerun pw.x to the end")
    info = read_pw_info(path)
    struct = structure or AseAtomsAdaptor.get_structure(atoms)
    nspin = max(k.s for k in kpts) + 1
    frac = np.array([k.k for k in kpts if k.s == 0])
    eig = [np.array([k.eps_n for k in kpts if k.s == s]).T for s in range(nspin)]
    nel = nelec if nelec is not None else info["nelec"]
    per_band = 1 if (nspin == 2 or info["noncollinear"]) else 2
    return _bs_from_arrays(frac, eig, struct, (nel, per_band, info), labels)


def _bs_from_arrays(frac: np.ndarray, eig: list, struct: Any, occ: tuple, labels: Any):
    """BandStructureSymmLine from k-points, per-spin (n_bands, n_k) energies and labels.

    ``occ`` = (electrons, electrons per band, pw.x info) fixes the Fermi level; ``labels``
    (k index -> name, what the bands job recorded) wins over matching the cell's own path.
    """
    from pymatgen.electronic_structure.bandstructure import BandStructureSymmLine
    from pymatgen.electronic_structure.core import Spin

    eig = {(Spin.up, Spin.down)[s]: np.asarray(e, dtype=float) for s, e in enumerate(eig)}
    efermi = _midgap(eig, *occ)
    if labels:
        named = {int(i): n for i, n in labels.items()}
        label_coords = {n: frac[i] for i, n in sorted(named.items(), reverse=True)}
    else:
        label_coords = _label_kpoints(struct, frac)
    frac, eig = _split_joints(frac, eig, label_coords)
    rec = struct.lattice.reciprocal_lattice
    return BandStructureSymmLine(
        frac, eig, rec, efermi, label_coords, coords_are_cartesian=False, structure=struct
    )


def _bs_from_document(doc: dict[str, Any], structure: Any, nelec: float | None) -> Any:
    """BandStructureSymmLine from a bands task document's ``bandstructure`` entry."""
    from pymatgen.core import Structure

    if structure is None or doc.get("kpoints_frac") is None:
        raise InputError(
            "the stored band structure has no structure or k-points",
            "pass the task's structure (output.structure) with its bandstructure",
        )
    struct = structure if isinstance(structure, Structure) else Structure.from_dict(structure)
    eig = np.asarray(doc["eigenvalues"], dtype=float)  # (spin, k, band)
    info = {"fermi_eV": doc.get("efermi_eV")}
    return _bs_from_arrays(
        np.asarray(doc["kpoints_frac"], dtype=float), [e.T for e in eig], struct,
        (nelec, 1 if len(eig) == 2 else 2, info), doc.get("labels"),
    )  # fmt: skip


def _split_joints(frac: np.ndarray, eig: dict, labels: dict) -> tuple[np.ndarray, dict]:
    """Repeat labelled k-points inside a continuous path (pymatgen's branch convention).

    pymatgen starts a new branch between two consecutive labelled k-points; lists that give
    a corner only once (Γ-X-M as one run) get that corner repeated.
    """
    coords = np.array(list(labels.values())) if labels else np.zeros((0, 3))

    def labelled(i: int) -> bool:
        return bool(coords.size) and bool(np.any(np.linalg.norm(coords - frac[i], axis=1) < 1e-4))

    n = len(frac)
    flags = [labelled(i) for i in range(n)]
    idx = []
    for i in range(n):
        idx.append(i)
        if 0 < i < n - 1 and flags[i] and not flags[i - 1] and not flags[i + 1]:
            idx.append(i)
    return frac[idx], {spin: e[:, idx] for spin, e in eig.items()}


def _midgap(eig: dict, nelec: float | None, per_band: int, info: dict) -> float:
    """A Fermi level between the occupied and empty bands (or the code's own)."""
    if nelec is None:
        if info["fermi_eV"] is not None and not isinstance(info["fermi_eV"], list):
            return float(info["fermi_eV"])
        raise InputError(
            "the number of electrons is unknown, so occupied bands cannot be told",
            "give nelec or the pw.x output that prints it",
        )
    if per_band == 1 and len(eig) == 2:
        allv = np.sort(np.concatenate([e.ravel() for e in eig.values()]))
        nk = next(iter(eig.values())).shape[1]
        n = round(nelec * nk)
        return float((allv[n - 1] + allv[n]) / 2)
    e = next(iter(eig.values()))
    nocc = math.ceil(nelec / per_band - 1e-6)  # a partly filled band (odd electrons) is occupied
    if nocc >= e.shape[0]:
        raise InputError(
            f"{e.shape[0]} bands hold no empty band for {nelec:g} electrons",
            "increase nbnd in the bands run",
        )
    top = e[:nocc].max()
    bottom = e[nocc:].min()
    return float((top + bottom) / 2) if bottom > top else float(top)


def _label_kpoints(structure: Any, frac: np.ndarray) -> dict[str, np.ndarray]:
    """Labels of the k-points that are high-symmetry points of the cell's own path.

    The points are those of :func:`perovflow.structures.kpath.cell_kpath`, in this cell's
    reciprocal basis (a k-point matches a label up to a reciprocal lattice vector).
    """
    from perovflow.structures.kpath import cell_kpath

    try:
        points = cell_kpath(structure).points
    except InputError:
        return {}
    labels: dict[str, np.ndarray] = {}
    for name, coords in points.items():
        delta = frac - coords
        hit = np.flatnonzero(np.linalg.norm(delta - np.rint(delta), axis=1) < 1e-4)
        if hit.size:
            labels[name] = frac[hit[0]]
    return labels


def _find_bands_output(folder: Path) -> Path | None:
    """The pw.x output of a bands run in ``folder`` (else any pw.x output)."""
    from perovflow.engines.qe.projwfc import find_pw_output, read_text

    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name.endswith((".out", ".out.gz", ".log")):
            text = read_text(p)
            if "Program PWSCF" in text[:4000] and "End of band structure calculation" in text:
                return p
    return find_pw_output(folder)


def load_bandstructure(
    source: Any, structure: Any = None, nelec: float | None = None, labels: Any = None
):
    """A pymatgen BandStructureSymmLine from an object, a dict or a pw.x output/folder.

    A dict is either ``BandStructureSymmLine.as_dict()`` or a bands task document's
    ``bandstructure`` entry (then ``structure`` is the task's structure). ``labels``
    (k index -> name) are the path's labels as the bands job recorded them.
    """
    from pymatgen.electronic_structure.bandstructure import BandStructureSymmLine

    if isinstance(source, BandStructureSymmLine):
        return source
    if isinstance(source, dict) and "kpoints_frac" in source:
        return _bs_from_document(source, structure, nelec)
    if isinstance(source, dict):
        try:
            return BandStructureSymmLine.from_dict(source)
        except Exception as exc:
            raise InputError(
                f"the stored band structure cannot be read ({exc})",
                "store BandStructureSymmLine.as_dict()",
            ) from exc
    path = Path(source)
    if path.is_dir():
        found = _find_bands_output(path)
        if found is None:
            raise InputError(f"no pw.x output in {path}", "give the bands run's folder or file")
        path = found
    return _bs_from_pw_output(path, structure, nelec, labels)


def _kinfo(bs: Any, kidx: int) -> dict[str, Any]:
    k = bs.kpoints[kidx]
    return {
        "index": int(kidx),
        "label": k.label,
        "frac_coords": [round(float(x), 6) for x in k.frac_coords],
    }


def analyze_bands(
    source: Any,
    structure: Any = None,
    nelec: float | None = None,
    fit_points: int = 3,
    labels: Any = None,
) -> BandsResult:
    """Gap (direct/indirect, where), band edges and effective masses.

    Parameters
    ----------
    source
        BandStructureSymmLine, its dict, or a pw.x bands output / calculation folder.
    structure
        Structure for k-point labels (default: the one in the output).
    nelec
        Number of valence electrons (default: read from the pw.x output).
    fit_points
        k-points used on each side of an edge for the parabolic fit (>= 2).
    labels
        k index -> label of the path, as the bands job recorded them (default: matched to
        the cell's own high-symmetry points).
    """
    if fit_points < 2:
        raise InputError(f"fit_points={fit_points} is too few for a parabola", "use 2 or more")
    bs = load_bandstructure(source, structure, nelec, labels)
    if bs.is_metal():
        return BandsResult(
            0.0,
            False,
            True,
            None,
            None,
            None,
            None,
            None,
            None,
            bs.is_spin_polarized,
            [],
            str(source),
        )
    gap = bs.get_band_gap()
    vbm, cbm = bs.get_vbm(), bs.get_cbm()
    direct = bs.get_direct_band_gap_dict()
    best = min(direct.values(), key=lambda d: d["value"]) if direct else None
    return BandsResult(
        band_gap_eV=float(gap["energy"]),
        is_direct=bool(gap["direct"]),
        is_metal=False,
        vbm_eV=float(vbm["energy"]),
        cbm_eV=float(cbm["energy"]),
        vbm_kpoint=_kinfo(bs, vbm["kpoint_index"][0]),
        cbm_kpoint=_kinfo(bs, cbm["kpoint_index"][0]),
        direct_gap_eV=None if best is None else float(best["value"]),
        direct_gap_kpoint=None if best is None else _kinfo(bs, best["kpoint_index"]),
        spin_polarized=bool(bs.is_spin_polarized),
        effective_masses=effective_masses(bs, fit_points),
        source=str(source) if not isinstance(source, dict) else "band structure dict",
    )


def plot_bands(
    source: Any,
    path: str | Path,
    structure: Any = None,
    nelec: float | None = None,
    *,
    labels: Any = None,
    dos: Any = None,
    levels: list[tuple[float, str]] | None = None,
    vbm_eV: float | None = None,
    window: tuple[float, float] | None = None,
) -> Path:
    """Bands along the labelled path from the VBM, with an optional DOS panel, as PNG.

    Parameters
    ----------
    source, structure, nelec, labels
        As :func:`load_bandstructure`.
    dos
        A :class:`~perovflow.analysis.pdos.PDOSResult` of the same calculation (same
        absolute energy scale), drawn beside the bands.
    levels
        (absolute energy eV, label) of defect/in-gap levels to mark.
    vbm_eV
        The zero (absolute eV); default the band structure's VBM (its Fermi level if metallic).
    window
        Energy range shown, eV from the zero (default: 3 eV below to 1.5 eV above the CBM).
    """
    from perovflow.analysis.plots import band_dos_figure

    bs = load_bandstructure(source, structure, nelec, labels)
    if vbm_eV is None:
        vbm_eV = bs.efermi if bs.is_metal() else float(bs.get_vbm()["energy"])
    if window is None:
        top = 3.0 if bs.is_metal() else float(bs.get_cbm()["energy"]) - vbm_eV + 1.5
        window = (-3.0, max(top, 3.0))
    kfrac = np.array([k.frac_coords for k in bs.kpoints])
    named = {i: k.label for i, k in enumerate(bs.kpoints) if k.label}
    bands = {("up" if int(spin) == 1 else "down"): np.asarray(e) for spin, e in bs.bands.items()}
    return band_dos_figure(
        kfrac, bs.lattice_rec.matrix, named, bands, vbm_eV, path, dos, levels, window
    )
