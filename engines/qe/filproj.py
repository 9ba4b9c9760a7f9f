"""projwfc.x's ``filproj`` files: full-precision projections |<phi_w|psi_i>|^2.

projwfc.x writes ``<filproj>.projwfc_up`` (and ``_down`` for LSDA runs) when ``filproj`` is
set: the weights of the standard output with ten decimals and no 0.001 cut-off. Where they
sit next to the output (and their sizes match it), the projection parser
(:mod:`perovflow.engines.qe.projwfc`) takes the weights from them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from perovflow.engines.qe.files import read_text
from perovflow.errors import InputError


def read_filproj(path: str | Path, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``filproj`` file (``*.projwfc_up``/``_down``): full-precision |<phi|psi>|^2.

    Returns
    -------
    wfc_atom, proj
        Atom index (0-based) of each atomic wavefunction, and the projections of shape
        (natomwfc, nkstot * nbnd) ordered (k, band).
    """
    text = read_text(path)
    lines = text.splitlines()
    try:
        nat, ntyp = (int(x) for x in lines[1].split()[6:8])
        ibrav = int(lines[2].split()[0])
        skip = 3 + (3 if ibrav == 0 else 0) + 1 + ntyp + nat
        nwfc, nk, nbnd = (int(x) for x in lines[skip].split()[:3])
        start = skip + 2  # the "F F" (noncollinear, spin-orbit) line follows
        block = 1 + nk * nbnd
        body = lines[start : start + nwfc * block]
        if len(body) != nwfc * block:
            raise ValueError("file ends early")
        atom = np.array([int(body[w * block].split()[1]) - 1 for w in range(nwfc)])
        numbers = "\n".join("\n".join(body[w * block + 1 : (w + 1) * block]) for w in range(nwfc))
        table = np.array(numbers.split(), dtype=np.float64).reshape(nwfc, nk * nbnd, 3)
    except (ValueError, IndexError) as exc:
        raise InputError(
            f"projection file {path} is truncated or corrupt ({exc})",
            "rerun projwfc.x with filproj set",
        ) from exc
    return atom, table[:, :, 2].astype(dtype)


def full_precision(
    folder: Path, filproj: str | Path | None, nwfc: int, nstates: int, dtype: type
) -> np.ndarray | None:
    """Projections (nwfc, nstates) from the filproj file(s) of ``folder``, or None.

    ``_up`` and ``_down`` are joined along the states (projwfc.x's order: spin up first).
    A file found by itself whose sizes differ from the output is ignored; one given
    explicitly is an error.
    """
    paths = [Path(filproj)] if filproj is not None else sorted(folder.glob("*.projwfc_up*"))
    if not paths:
        return None
    _atom, proj = read_filproj(paths[0], dtype)
    down = Path(str(paths[0]).replace("projwfc_up", "projwfc_down"))
    if down.is_file():
        proj = np.concatenate([proj, read_filproj(down, dtype)[1]], axis=1)
    if proj.shape != (nwfc, nstates):
        if filproj is not None:
            raise InputError(
                f"{filproj} has {proj.shape} projections but the output has ({nwfc}, {nstates})",
                "give the filproj file of the same projwfc.x run",
            )
        return None
    return proj


def sum_dense(
    proj: np.ndarray, wfc_atom: np.ndarray, wfc_l: np.ndarray, natoms: int, keep_l: bool, dtype
) -> tuple[np.ndarray, np.ndarray | None]:
    """Sum full (nwfc, nstates) projections onto atoms (and atoms x l)."""
    nstates = proj.shape[1]
    weights = np.zeros((nstates, natoms), dtype=dtype)
    orb = np.zeros((nstates, natoms, 4), dtype=dtype) if keep_l else None
    for w in range(proj.shape[0]):  # loop over atomic orbitals, vectorised over states
        weights[:, wfc_atom[w]] += proj[w]
        if orb is not None and wfc_l[w] < 4:
            orb[:, wfc_atom[w], wfc_l[w]] += proj[w]
    return weights, orb
