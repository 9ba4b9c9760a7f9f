"""Parsers for CP2K outputs: energy, forces, MO eigenvalues/occupations, geometry, projections.

Everything is read with whole-file regular expressions and numpy (no per-line Python loops
over the big blocks), so outputs of nanocrystals with thousands of MOs parse in well under
a second.

* :func:`parse_output` reads ``cp2k.out`` into a :class:`CP2KResult`.
* :func:`read_projections` reads the per-atom ``<project>-list<i>-1.pdos`` files (one
  ``&LDOS`` list per atom; CP2K's Mulliken split ``c_μi (S c)_μi`` of every MO, so each
  MO's weights sum to one) into a :class:`~perovflow.projections.StateProjections`.
* :func:`read_trajectory` reads the GEO_OPT ``<project>-pos-1.xyz`` frames.
* :func:`band_edges` gives VBM/CBM/gap from eigenvalues and occupations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase.units import Hartree

from perovflow.engines.cp2k.inputs import FORCE_AU, PROJECT
from perovflow.errors import EngineError

END_MARKER = "PROGRAM ENDED AT"
_NUM = r"[-+]?\d*\.?\d+(?:[eEdD][-+]?\d+)?"
_VERSION = re.compile(r"CP2K\| version string:\s+(.+?)\s*$", re.M)
_ENERGY = re.compile(rf"ENERGY\| Total FORCE_EVAL \( \w+ \) energy[^:]*:\s+({_NUM})")
_MO_HEAD = re.compile(
    r"^ MO\| (?:(ALPHA|BETA) )?EIGENVALUES AND OCCUPATION NUMBERS(?: FOR K POINT\s+(\d+))?", re.M
)
_NKPOINTS = re.compile(r"BRILLOUIN\| List of Kpoints \[2 Pi/Bohr\]\s+(\d+)")
_MO_ROW = re.compile(rf"^ MO\|\s+\d+\s+({_NUM})\s+({_NUM})\s+({_NUM})\s*$", re.M)
_FERMI = re.compile(rf"^ MO\| E\(Fermi\):\s+({_NUM})\s+a\.u\.", re.M)
_FORCES = re.compile(
    r"ATOMIC FORCES in \[a\.u\.\]\s*\n\s*\n\s*# Atom.*\n((?:\s+\d+\s+\d+\s+\S+.*\n)+)"
)
_STRESS = re.compile(
    r"STRESS\| Analytical stress tensor \[GPa\]\s*\n\s*STRESS\|\s+x\s+y\s+z\s*\n"
    r"((?:\s*STRESS\|\s+[xyz]\s+\S+\s+\S+\s+\S+\s*\n){3})"
)
_KPOINT = re.compile(rf"^\s*KPOINT\s+({_NUM})\s+({_NUM})\s+({_NUM})\s+({_NUM})", re.M | re.I)


@dataclass
class CP2KResult:
    """What one CP2K output says (energies in eV, forces in eV/Å).

    ``eigenvalues``/``occupations`` are arrays [spin][k][MO]; occupations are per spin
    channel (0..1 spin-polarized, 0..2 closed shell, as CP2K prints them).
    """

    version: str | None = None
    completed: bool = False
    energy_eV: float | None = None
    forces: np.ndarray | None = None
    eigenvalues: np.ndarray | None = None
    occupations: np.ndarray | None = None
    fermi_eV: float | None = None
    scf_converged: bool = True
    geo_converged: bool | None = None
    warnings: list[str] = field(default_factory=list)


def read_text(path: Path) -> str:
    """Text of a file; :class:`EngineError` if it is missing."""
    try:
        return Path(path).read_text(errors="replace")
    except OSError as exc:
        raise EngineError(
            f"cannot read CP2K output {path}: {exc.strerror or exc}",
            "run the calculation first, or point at the folder that holds cp2k.out",
        ) from None


def parse_output(path: Path, natoms: int | None = None) -> CP2KResult:
    """Parse ``cp2k.out``.

    Raises
    ------
    EngineError
        If the file is truncated (no end marker) or holds no energy, or the forces block
        does not match ``natoms``; the message is one line naming the file.
    """
    text = read_text(path)
    res = CP2KResult(completed=END_MARKER in text[-3000:])
    m = _VERSION.search(text)
    res.version = m.group(1) if m else None
    energies = _ENERGY.findall(text)
    if not res.completed or not energies:
        what = "has no total energy" if res.completed else "is truncated (no end marker)"
        raise EngineError(
            f"CP2K output {path} {what}",
            "rerun the calculation; check cp2k.err and the end of cp2k.out for the cause",
        )
    res.energy_eV = float(energies[-1]) * Hartree
    res.forces = _parse_forces(text, natoms, path)
    res.eigenvalues, res.occupations = _parse_mos(text)
    _check_all_kpoints(text, res.eigenvalues, path)
    fermi = _FERMI.findall(text)
    res.fermi_eV = float(fermi[-1]) * Hartree if fermi else None
    res.scf_converged = "SCF run NOT converged" not in text
    if "GEO_OPT" in text[:20000] or "GEOMETRY OPTIMIZATION" in text:
        res.geo_converged = "GEOMETRY OPTIMIZATION COMPLETED" in text
    res.warnings = sorted(set(re.findall(r"\*\*\* WARNING in ([^\n]*?) \*\*\*", text)))[:20]
    return res


def abort_message(text: str) -> str | None:
    """The message of CP2K's last ``[ABORT]`` box (with its source location), if any."""
    at = text.rfind("[ABORT]")
    if at < 0:
        return None
    art = re.compile(r"^(\\___/|\||O/\||/\| \||/ \\)\s*")
    words = []
    for line in text[at:].splitlines()[1:7]:
        body = line.strip().strip("*").strip()
        if body.startswith("****"):
            break
        body = art.sub("", body).strip()
        if body:
            words.append(body)
    return " ".join(words) or None


def _parse_forces(text: str, natoms: int | None, path: Path) -> np.ndarray | None:
    blocks = _FORCES.findall(text)
    if not blocks:
        return None
    rows = np.array(blocks[-1].split(), dtype=object).reshape(-1, 6)
    forces = rows[:, 3:].astype(float) * FORCE_AU
    if natoms is not None and len(forces) != natoms:
        raise EngineError(
            f"CP2K output {path} lists forces on {len(forces)} atoms, expected {natoms}",
            "the output does not belong to this structure; rerun in a clean folder",
        )
    return forces


def _parse_mos(text: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Last printed MO block of every (spin, k): eigenvalues (eV) and occupations."""
    heads = list(_MO_HEAD.finditer(text))
    if not heads:
        return None, None
    blocks: dict[tuple[int, int], np.ndarray] = {}
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        chunk = text[head.end() : end]
        stop = chunk.find(" MO| Sum:")
        rows = _MO_ROW.findall(chunk if stop < 0 else chunk[:stop])
        if not rows:
            continue
        spin = 1 if head.group(1) == "BETA" else 0
        kpt = int(head.group(2) or 1) - 1
        blocks[(spin, kpt)] = np.array(rows, dtype=float)
    if not blocks:
        return None, None
    nspin = 1 + max(s for s, _ in blocks)
    nk = 1 + max(k for _, k in blocks)
    nmo = min(b.shape[0] for b in blocks.values())
    eig = np.full((nspin, nk, nmo), np.nan)
    occ = np.zeros((nspin, nk, nmo))
    for (s, k), rows in blocks.items():
        eig[s, k] = rows[:nmo, 1]
        occ[s, k] = rows[:nmo, 2]
    return eig, occ


def _check_all_kpoints(text: str, eig: np.ndarray | None, path: Path) -> None:
    """Refuse MO eigenvalues printed for only some k-points (a gap from those would be wrong)."""
    m = _NKPOINTS.search(text)
    if eig is None or m is None or eig.shape[1] == int(m.group(1)):
        return
    raise EngineError(
        f"CP2K output {path} has MO eigenvalues for {eig.shape[1]} of {m.group(1)} k-points "
        "(CP2K prints only the first k-point group's under MPI)",
        "set FORCE_EVAL/DFT/KPOINTS/PARALLEL_GROUP_SIZE 0 (perovflow's input sets do) and rerun",
    )


def read_kpoints(params: dict[str, Any]) -> dict[str, Any] | None:
    """k-points (fractional) and normalised weights of a k-point run, None at Γ only."""
    kp = params.get("FORCE_EVAL", {}).get("DFT", {}).get("KPOINTS")
    if not kp:
        return None
    pts = np.array(kp["KPOINT"], dtype=float)
    return {"kpoints": pts[:, :3].tolist(), "weights": (pts[:, 3] / pts[:, 3].sum()).tolist()}


def band_edges(eig: np.ndarray, occ: np.ndarray) -> dict[str, Any]:
    """VBM, CBM, gap and directness by the shared rule (:mod:`perovflow.electronic`).

    CP2K's occupations (maximum 2 closed shell, 1 per spin channel) are turned into
    fractions of that maximum; a partly filled state (10-90 %) means no gap.
    """
    from perovflow.electronic import band_edges_grid

    full = 1.0 if eig.shape[0] == 2 else 2.0
    edges = band_edges_grid(eig, np.asarray(occ, dtype=float) / full)
    keys = ("vbm_eV", "cbm_eV", "band_gap_eV", "is_direct")
    return {**{k: edges[k] for k in keys}, "spin_edges": edges.get("spin")}


def _read_pdos(path: Path) -> tuple[np.ndarray, list[str]]:
    """Rows (MO, eigenvalue a.u., occupation, l columns) and the l labels of one .pdos file."""
    try:
        with open(path) as fh:
            head = [fh.readline(), fh.readline()]
        rows = np.loadtxt(path, comments="#", ndmin=2)
    except (OSError, ValueError) as exc:
        raise EngineError(
            f"CP2K PDOS file {path} is missing or truncated ({str(exc).splitlines()[0]})",
            "rerun the calculation",
        ) from None
    tokens = head[1].split()
    labels = tokens[tokens.index("Occupation") + 1 :] if "Occupation" in tokens else []
    if rows.shape[0] == 0 or rows.shape[1] != 3 + len(labels):
        raise EngineError(f"CP2K PDOS file {path} is empty or truncated", "rerun the calculation")
    return rows, labels


def read_projections(
    directory: Path, species: list[str], ldos_lists: list[Any], fermi_eV: float | None = None
) -> Any:
    """Per-atom MO weights from the ``&LDOS`` files (one list per atom, in input order).

    Parameters
    ----------
    directory
        Calculation folder.
    species
        Symbol of each atom.
    ldos_lists
        The ``LIST`` value of each ``&LDOS`` section, in input order (atom indices, 1-based).

    Returns
    -------
    StateProjections
        ``weights[i, a]`` (sum over l; rows sum to ~1), ``orbital_weights[i, a, l]``.
    """
    from perovflow.projections import StateProjections

    spins = ["ALPHA_", "BETA_"] if (directory / f"{PROJECT}-ALPHA_list1-1.pdos").is_file() else [""]
    energies, occs, spin_idx, weights, orbital = [], [], [], [], []
    for s, tag in enumerate(spins):
        mos, per_atom, orb = _spin_channel(directory, tag, len(species), ldos_lists, len(spins))
        if mos is not None:
            energies.append(mos[0])
            occs.append(mos[1])
            spin_idx.append(np.full(mos[0].shape[0], s))
        weights.append(per_atom)
        orbital.append(orb)
    return StateProjections(
        energies=np.concatenate(energies),
        weights=np.vstack(weights),
        species=list(species),
        spins=np.concatenate(spin_idx),
        occupations=np.concatenate(occs),
        orbital_weights=np.vstack(orbital),
        fermi_eV=fermi_eV,
        source="cp2k pdos (Mulliken, per-atom LDOS lists)",
    )


def _spin_channel(
    directory: Path, tag: str, natoms: int, ldos_lists: list[Any], nspins: int
) -> tuple[tuple[np.ndarray, np.ndarray] | None, np.ndarray, np.ndarray | None]:
    """One spin channel (file prefix ``tag``) of the ``&LDOS`` files.

    Returns the MO energies (eV) and occupations per spin orbital (None without lists), the
    per-atom weights (MO x atom) and the per-l weights (MO x atom x l).
    """
    from perovflow.projections import L_LABELS

    per_atom, orb, mos = np.zeros((0, 0)), None, None
    for i, atoms_in_list in enumerate(ldos_lists):
        idx = [int(a) - 1 for a in np.atleast_1d(atoms_in_list)]
        if len(idx) != 1:
            raise EngineError(
                f"LDOS list {i + 1} holds {len(idx)} atoms; projections need one atom per list",
                "do not override FORCE_EVAL/DFT/PRINT/PDOS/LDOS",
            )
        rows, labels = _read_pdos(directory / f"{PROJECT}-{tag}list{i + 1}-1.pdos")
        if orb is None:
            per_atom = np.zeros((rows.shape[0], natoms))
            orb = np.zeros((rows.shape[0], natoms, 4))
            mos = (rows[:, 1] * Hartree, rows[:, 2] / (1.0 if nspins == 2 else 2.0))
        if rows.shape[0] != per_atom.shape[0]:
            raise EngineError(
                f"CP2K PDOS files disagree on the number of MOs (list {i + 1})",
                "rerun the calculation in a clean folder",
            )
        per_atom[:, idx[0]] = rows[:, 3:].sum(axis=1)
        for j, lab in enumerate(labels[:4]):
            orb[:, idx[0], L_LABELS.index(lab)] = rows[:, 3 + j]
    return mos, per_atom, orb


def read_trajectory(path: Path) -> list[dict[str, Any]]:
    """Frames of a CP2K ``pos`` XYZ file: ``[{"symbols", "positions", "energy_eV"}, ...]``."""
    if not Path(path).is_file():
        return []
    lines = Path(path).read_text(errors="replace").splitlines()
    frames, i = [], 0
    while i < len(lines) and lines[i].strip():
        n = int(lines[i])
        block = lines[i + 2 : i + 2 + n]
        if len(block) < n:
            break  # truncated last frame
        table = np.array(" ".join(block).split(), dtype=object).reshape(n, -1)
        energy = re.search(rf"E\s*=\s*({_NUM})", lines[i + 1])
        frames.append(
            {
                "symbols": table[:, 0].tolist(),
                "positions": table[:, 1:4].astype(float).tolist(),
                "energy_eV": float(energy.group(1)) * Hartree if energy else None,
            }
        )
        i += 2 + n
    return frames


def read_cells(path: Path) -> np.ndarray:
    """Cell vectors (Å) of every step of a CELL_OPT ``<project>-1.cell`` file, [step][3][3].

    Each row is ``step time Ax Ay Az Bx By Bz Cx Cy Cz volume``; a truncated last row is
    dropped.
    """
    if not Path(path).is_file():
        return np.zeros((0, 3, 3))
    rows = [
        line.split()
        for line in Path(path).read_text(errors="replace").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    rows = [r for r in rows if len(r) == 12]
    return np.array([r[2:11] for r in rows], dtype=float).reshape(-1, 3, 3)


def read_stress_GPa(text: str) -> np.ndarray | None:
    """The last stress tensor (GPa, CP2K's sign: positive = compressed) printed in ``cp2k.out``."""
    blocks = _STRESS.findall(text)
    if not blocks:
        return None
    rows = [line.split()[2:5] for line in blocks[-1].strip().splitlines()]
    return np.array(rows, dtype=float)


def read_folder_projections(folder: Path) -> Any:
    """Projections of a finished CP2K calculation folder (``cp2k.inp``, ``coords.xyz``, PDOS).

    The ``&LDOS`` lists come from the input perovflow wrote, the species and positions from
    its coordinate file, the cell (a cluster's box) from ``&CELL`` and the Fermi level from
    ``cp2k.out``; the structure is attached so that shell groups work.
    """
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.engines.cp2k.inputs import COORD_FILE, INPUT_FILE, OUTPUT_FILE

    folder = Path(folder)
    text = read_text(folder / INPUT_FILE)
    lists = [int(n) for n in re.findall(r"&LDOS\s+LIST\s+(\d+)", text)]
    if not lists:
        raise EngineError(
            f"the CP2K input in {folder} asks for no per-atom projections (&LDOS)",
            "rerun the static job with projections on (the maker's default)",
        )
    try:
        atoms = read(folder / COORD_FILE, format="xyz")
    except (OSError, ValueError, StopIteration) as exc:
        raise EngineError(
            f"cannot read the CP2K coordinates {folder / COORD_FILE}: {exc}",
            "analyse the folder of a complete perovflow CP2K run, or its stored task id",
        ) from None
    fermi = parse_output(folder / OUTPUT_FILE, natoms=len(atoms)).fermi_eV
    proj = read_projections(folder, atoms.get_chemical_symbols(), lists, fermi)
    atoms.set_cell(_cell_from_input(text))
    atoms.pbc = True
    proj.structure = AseAtomsAdaptor.get_structure(atoms).as_dict()
    return proj


def _cell_from_input(text: str) -> np.ndarray:
    """Cell vectors (Å) of the input's ``&CELL``: ``A``/``B``/``C`` rows or a cluster's ``ABC``."""
    rows = [re.search(rf"^\s*{v}\s+(\S+)\s+(\S+)\s+(\S+)\s*$", text, re.M) for v in "ABC"]
    if all(rows):
        return np.array([[float(x) for x in m.groups()] for m in rows])
    abc = re.search(r"^\s*ABC\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
    if abc is None:
        raise EngineError("the CP2K input has no &CELL vectors", "rerun the calculation")
    return np.diag([float(x) for x in abc.groups()])
