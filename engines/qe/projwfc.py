"""Parser for ``projwfc.x`` runs: per-state atomic projections -> :class:`StateProjections`.

What is read
------------
* the ``projwfc.x`` standard output (``Atomic states used for projection``, then one
  ``==== e(  n) = ... eV ====`` block per band and k-point with the components
  ``w*[#  j]`` above 0.001 and three decimals);
* the ``filproj`` files when present (:mod:`perovflow.engines.qe.filproj`): the same weights
  with ten decimals, which then replace the rounded ones;
* the run's ``data-file-schema.xml`` (:mod:`perovflow.engines.qe.xml`), which projwfc.x itself
  reads: spin (LSDA, non-collinear, spin–orbit), k weights, occupations, Fermi level or
  HOMO/LUMO, eigenvalues and the structure. Without it the pw.x standard output of the same
  run (:mod:`perovflow.engines.qe.pwout`) gives what it prints. Which file is used, and how
  its facts become per-state arrays, is :mod:`perovflow.engines.qe.runinfo`; where the files
  sit in a folder is :mod:`perovflow.engines.qe.files`.

States are flattened over (spin, k, band): state ``i`` = band ``i % nbnd`` of k-point
``kindex[i]`` in spin channel ``spins[i]``. For LSDA runs projwfc.x numbers the k-points of
both spins consecutively (first half spin up): ``kindex`` counts k within a channel and the
k weights sum to 1 per channel. Non-collinear and spin–orbit runs have one channel whose
states hold one electron each (states of the atomic basis carry ``s_z`` or ``j, m_j``).
Weights are summed over each atom's orbitals (``weights``) and over each (atom, l)
(``orbital_weights``, l = s, p, d, f).

The standard output is scanned as bytes with numpy: every ``*[#`` marks a component whose
value (``d.ddd``) precedes it and whose wavefunction index runs to the next ``]``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from perovflow.engines.qe.files import (
    element_of,
    find_projwfc_output,
    find_pw_output,
    read_bytes,
    read_text,
)
from perovflow.engines.qe.filproj import full_precision, read_filproj, sum_dense
from perovflow.engines.qe.pwout import read_pw_info
from perovflow.engines.qe.runinfo import read_run_info, run_meta, state_layout
from perovflow.errors import InputError
from perovflow.projections import StateProjections

__all__ = [
    "ORBITAL_SPLIT_LIMIT",
    "element_of",
    "find_projwfc_output",
    "find_pw_output",
    "parse_projwfc",
    "read_filproj",
    "read_pw_info",
    "read_run_info",
    "read_text",
]

_STATE_RE = re.compile(
    r"state #\s*(\d+): atom\s+(\d+) \(([^)]*)\)\s*, wfc\s*(\d+) \(l=\s*(\d)( j=\s*[\d.]+)?"
)
_E_RE = re.compile(rb"==== e\(\s*\d+\) =\s*(\S+) eV ====")
_VAL_RE = re.compile(rb"(\d+\.\d+)\*\[#")
_NUM_RE = re.compile(r"-?\d+\.\d*(?:[Ee][-+]?\d+)?")
_NO_WFC = "Cannot project on zero atomic wavefunctions"
_STAR, _DOT, _CLOSE = ord("*"), ord("."), ord("]")
#: byte -> digit value; blank -> 0; anything else -> -1 (a corrupt number)
_DIGIT = np.full(256, -1, dtype=np.int32)
_DIGIT[ord("0") : ord("9") + 1] = np.arange(10)
_DIGIT[ord(" ")] = 0

#: Auto mode keeps the per-l split only below this many (state, atom, l) numbers.
ORBITAL_SPLIT_LIMIT = 50_000_000


def _states_table(text: str, source: str) -> tuple[np.ndarray, np.ndarray, list[str], bool]:
    """Atom index (0-based) and l of every atomic wavefunction, the atom labels, and
    whether the basis is spin–orbit (``j, m_j``) states."""
    rows = _STATE_RE.findall(text)
    if _NO_WFC in text or not rows:
        raise InputError(
            f"{source} has no atomic projections (projwfc.x found no atomic wavefunctions)",
            "use pseudopotentials that carry atomic wavefunctions (PP_PSWFC, e.g. SSSP or "
            "pslibrary UPF files; analytic GTH files have none)",
        )
    atom = np.array([int(r[1]) - 1 for r in rows])
    lval = np.array([int(r[4]) for r in rows])
    natoms = int(atom.max()) + 1
    labels = [""] * natoms
    for r in rows:
        labels[int(r[1]) - 1] = r[2].strip()
    if "" in labels:
        raise InputError(
            f"{source}: some atoms have no atomic wavefunctions in the projection table",
            "use pseudopotentials with atomic wavefunctions for every species",
        )
    return atom, lval, labels, bool(rows[0][5])


def _problem_sizes(text: str) -> dict[str, int]:
    sizes = {}
    for key in ("natomwfc", "nbnd", "nkstot"):
        m = re.search(rf"{key}\s*=\s*(\d+)", text)
        if m:
            sizes[key] = int(m.group(1))
    return sizes


def _energies(body: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Energy and byte offset of every ``==== e(`` block."""
    buf = np.frombuffer(body, dtype=np.uint8)
    e = np.flatnonzero(buf == ord("e"))
    e = e[(e >= 5) & (e + 30 < buf.size)]
    starts = e[(buf[e + 1] == ord("(")) & (buf[e - 2] == ord("=")) & (buf[e - 5] == ord("="))] - 5
    try:
        if starts.size and np.all(buf[starts + 11] == ord(")")):  # QE's i4, f11.5: fast path
            field = buf[starts[:, None] + np.arange(15, 26)]
            energies = field.view("S11").ravel().astype(np.float64)
        else:
            energies = np.array(_E_RE.findall(body)).astype(np.float64)
    except ValueError as exc:
        raise InputError(
            f"{source} has an unreadable band energy ({exc})", "rerun projwfc.x"
        ) from exc
    if energies.size != starts.size:
        raise InputError(f"{source} has an unreadable band energy", "rerun projwfc.x")
    return energies, starts


def _components(
    body: bytes, starts: np.ndarray, nwfc: int, source: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (state, wfc, weight) triplets printed as ``d.ddd*[#  n]`` after each block."""
    buf = np.frombuffer(body, dtype=np.uint8)
    star = np.flatnonzero(buf == _STAR)
    star = star[(star >= 5) & (star + 4 < buf.size)]
    star = star[(buf[star + 1] == ord("[")) & (buf[star + 2] == ord("#"))]
    end = _closing(buf, star, source)
    wfc = _integers(buf, star + 3, end, source) - 1
    if np.all(buf[star - 4] == _DOT):  # QE's f5.3: the fast path
        milli = sum(_DIGIT[buf[star - k]] * 10**p for k, p in ((5, 3), (3, 2), (2, 1), (1, 0)))
        values = np.where(milli >= 0, milli / 1000.0, np.nan)
    else:
        values = np.array(_VAL_RE.findall(body), dtype=np.float64)
    if values.size != star.size or np.isnan(values).any():
        raise InputError(f"{source} has unreadable projection components", "rerun projwfc.x")
    state = np.searchsorted(starts, star, side="right") - 1
    if wfc.size and (wfc.max() >= nwfc or wfc.min() < 0 or state.min() < 0):
        raise InputError(
            f"{source} refers to atomic state #{wfc.max() + 1} but lists only {nwfc}",
            "the output is corrupt; rerun projwfc.x",
        )
    return state, wfc, values


def _closing(buf: np.ndarray, star: np.ndarray, source: str) -> np.ndarray:
    """Offset of the ``]`` closing each ``*[#`` (QE's i4 puts it 7 bytes on)."""
    guess = np.minimum(star + 7, buf.size - 1)
    if np.all(buf[guess] == _CLOSE):
        return guess
    close = np.flatnonzero(buf == _CLOSE)
    pos = np.searchsorted(close, star)
    if star.size and pos.max() >= close.size:
        raise InputError(f"{source} has unreadable projection components", "rerun projwfc.x")
    return close[pos]


def _integers(buf: np.ndarray, begin: np.ndarray, end: np.ndarray, source: str) -> np.ndarray:
    """The right-aligned integers written in ``buf[begin:end]`` (blanks before the digits)."""
    out = np.zeros(begin.size, dtype=np.int64)
    bad = np.zeros(begin.size, dtype=bool)
    width = int((end - begin).max()) if begin.size else 0
    for k in range(1, width + 1):  # the k-th character left of the end, for all at once
        digit = _DIGIT[buf[end - k]]
        if k > int((end - begin).min()):
            digit = np.where(end - k >= begin, digit, 0)
        bad |= digit < 0
        out += digit * 10 ** (k - 1)
    if bad.any():
        raise InputError(f"{source} has an unreadable atomic-state index", "the output is corrupt")
    return out


def _kpoints(body: bytes) -> np.ndarray:
    rows, at = [], body.find(b"\n k =")
    while at >= 0:
        line = body[at + 5 : body.find(b"\n", at + 5)].decode()
        nums = _NUM_RE.findall(line.replace("-", " -"))
        rows.append([float(x) for x in nums[:3]])
        at = body.find(b"\n k =", at + 5)
    return np.array(rows, dtype=float).reshape(-1, 3)


def _accumulate(keys: np.ndarray, vals: np.ndarray, size: int, dtype) -> np.ndarray:
    """Dense array of ``size`` with ``vals`` summed at ``keys``."""
    out = np.zeros(size, dtype=dtype)
    np.add.at(out, keys, vals.astype(dtype))
    return out


def _sum_sparse(state, atom, lval, vals, nstates, natoms, keep_l, dtype):
    """Accumulate the printed (state, atom, l, weight) components into dense arrays."""
    weights = _accumulate(state * natoms + atom, vals, nstates * natoms, dtype)
    orb = None
    if keep_l:
        keys = (state * natoms + atom) * 4 + np.minimum(lval, 3)
        orb = _accumulate(keys, vals, nstates * natoms * 4, dtype).reshape(nstates, natoms, 4)
    return weights.reshape(nstates, natoms), orb


def parse_projwfc(
    path: str | Path,
    pw_output: str | Path | None = None,
    filproj: str | Path | None = None,
    orbitals: bool | None = None,
    dtype: type = np.float32,
) -> StateProjections:
    """Parse a projwfc.x run into :class:`StateProjections`.

    Parameters
    ----------
    path
        The projwfc.x standard output (``.gz`` allowed), or the calculation folder holding it.
    pw_output
        The pw.x output or ``data-file-schema.xml`` of the same calculation; by default the
        data file projwfc.x read, else the pw.x output in the same folder. Without either,
        k-points are weighted equally and occupations/Fermi level stay unknown.
    filproj
        ``<filproj>.projwfc_up`` file with full-precision weights; found next to the output
        when omitted (used only when its sizes match the output).
    orbitals
        Keep the split by l (``orbital_weights``); default: only when it stays below
        :data:`ORBITAL_SPLIT_LIMIT` numbers.
    dtype
        Float type of the weight arrays (float32 halves the memory).

    Raises
    ------
    InputError
        Truncated or corrupt output, a run without atomic projections, or a data file of
        another run.
    """
    path, head, body, data = _read_sections(Path(path))
    folder, src = path.parent, path.name
    wfc_atom, wfc_l, labels, spinorbit = _states_table(head, src)
    energies, starts, kpts, nbnd, nk = _bands(head, body, data, src)
    natoms, nstates = len(labels), len(energies)
    keep_l = orbitals if orbitals is not None else nstates * natoms * 4 <= ORBITAL_SPLIT_LIMIT
    weights, orb, precision = _weights(
        folder, filproj, body, starts, (wfc_atom, wfc_l), natoms, keep_l, dtype, src
    )
    run = read_run_info(folder, pw_output, head)
    layout = state_layout(run, nk, nbnd, energies, src)
    elements = {lab: element_of(lab) for lab in set(labels)}
    return StateProjections(
        energies=energies,
        weights=weights,
        species=[elements[lab] for lab in labels],
        orbital_weights=orb,
        source=f"qe projwfc.x: {path}",
        meta=_meta(labels, nbnd, nk, kpts, precision, spinorbit, run),
        structure=run["structure"],
        **layout,
    )


def _weights(
    folder: Path,
    filproj: str | Path | None,
    body: bytes,
    starts: np.ndarray,
    wfcs: tuple[np.ndarray, np.ndarray],
    natoms: int,
    keep_l: bool,
    dtype: type,
    src: str,
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Return (state x atom weights, state x atom x l weights or None, their precision).

    ``wfcs`` holds the atom and l of every atomic wavefunction. The filproj file's
    full-precision weights are used when they match the output, else the printed components.
    """
    wfc_atom, wfc_l = wfcs
    nstates = starts.size
    full = full_precision(folder, filproj, len(wfc_atom), nstates, dtype)
    if full is not None:
        weights, orb = sum_dense(full, wfc_atom, wfc_l, natoms, keep_l, dtype)
        return weights, orb, "filproj (1e-10)"
    st, wfc, vals = _components(body, starts, len(wfc_atom), src)
    weights, orb = _sum_sparse(st, wfc_atom[wfc], wfc_l[wfc], vals, nstates, natoms, keep_l, dtype)
    return weights, orb, "stdout (3 decimals, components < 0.001 dropped)"


def _read_sections(path: Path) -> tuple[Path, str, bytes, bytes]:
    """Return (output file, header text, band blocks, all bytes) of a projwfc.x output.

    The header ends at the first ``==== e(`` block; a file without ``Program PROJWFC`` in
    it is a one-line error.
    """
    path, data = _open_output(path)
    start = data.find(b"==== e(")
    head = data[: start if start >= 0 else len(data)].decode(errors="replace")
    body = data[start:] if start >= 0 else b""
    if "Program PROJWFC" not in head:
        raise InputError(
            f"{path.name} is not a projwfc.x output", "give the projwfc.x standard output"
        )
    return path, head, body, data


def _meta(
    labels: list[str],
    nbnd: int,
    nk: int,
    kpts: np.ndarray,
    precision: str,
    spinorbit: bool,
    run: dict,
) -> dict:
    """The ``meta`` of the projections: atoms, sizes, k-points, precision, basis, run facts."""
    return {
        "labels": labels,
        "nbnd": nbnd,
        "nkstot": nk,
        "kpoints_cart_2pi_alat": kpts.tolist(),
        "precision": precision,
        "basis": "l, j, m_j" if spinorbit else "l, m" + (", s_z" if run["noncollinear"] else ""),
        **run_meta(run),
    }


def _open_output(path: Path) -> tuple[Path, bytes]:
    """The projwfc.x output (``path`` or the one inside the folder ``path``) and its bytes."""
    if path.is_dir():
        found = find_projwfc_output(path)
        if found is None:
            raise InputError(f"no projwfc.x output in {path}", "run projwfc.x in that folder")
        path = found
    return path, read_bytes(path)


def _bands(head: str, body: bytes, data: bytes, src: str) -> tuple:
    """Energies and block offsets, k-points, nbnd and nkstot, checked for completeness."""
    sizes = _problem_sizes(head)
    energies, starts = _energies(body, src)
    kpts = _kpoints(data)
    nbnd = sizes.get("nbnd") or (len(energies) // max(len(kpts), 1))
    nk = sizes.get("nkstot", len(kpts))
    done = b"JOB DONE" in data[-100_000:]
    if len(energies) != nk * nbnd or len(kpts) != nk or not done:
        raise InputError(
            f"{src} is truncated: {len(energies)} of {nk * nbnd} band blocks "
            f"({len(kpts)} of {nk} k-points)" + ("" if done else ", no JOB DONE"),
            "rerun projwfc.x and let it finish",
        )
    return energies, starts, kpts, nbnd, nk
