"""Parser for ``projwfc.x`` output: per-state atomic projections -> :class:`StateProjections`.

What is read
------------
* the ``projwfc.x`` standard output (``Atomic states used for projection``, then one
  ``==== e(  n) = ... eV ====`` block per band and k-point with the components
  ``w*[#  j]`` above 0.001 and three decimals);
* optionally the ``filproj`` file (``<filproj>.projwfc_up``/``_down``) written when
  ``filproj`` is set: the same weights with ten decimals and no 0.001 cut-off. When it sits
  next to the output it replaces the rounded weights;
* the ``pw.x`` output of the same run (found in the same folder, or given) for k-point
  weights, the number of electrons, the Fermi level / HOMO and the structure.

States are flattened over (spin, k, band): state ``i`` = band ``i % nbnd`` of k-point
``kindex[i]``. For LSDA runs projwfc numbers the k-points of both spins consecutively
(first half spin up), which is kept. Weights are summed over each atom's orbitals
(``weights``) and over each (atom, l) (``orbital_weights``, l = s, p, d, f).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

from perovflow.analysis.projections import StateProjections
from perovflow.errors import InputError

_STATE_RE = re.compile(r"state #\s*(\d+): atom\s+(\d+) \(([^)]*)\)\s*, wfc\s*(\d+) \(l=\s*(\d)")
_K_RE = re.compile(r"^ k =\s*(.*)$", re.M)
_E_RE = re.compile(r"==== e\(\s*(\d+)\) =\s*(\S+) eV ====")
_VAL_RE = re.compile(r"(\d+\.\d+)\*\[#")
_IDX_RE = re.compile(r"\*\[#\s*(\d+)\]")
_NUM_RE = re.compile(r"-?\d+\.\d*(?:[Ee][-+]?\d+)?")
_ELEMENT_RE = re.compile(r"[A-Z][a-z]?")
_NO_WFC = "Cannot project on zero atomic wavefunctions"

#: Auto mode keeps the per-l split only below this many (state, atom, l) numbers.
ORBITAL_SPLIT_LIMIT = 50_000_000


def read_text(path: str | Path) -> str:
    """Read a text file, transparently gunzipping ``*.gz``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file {path} does not exist", "give the path of an existing output file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", errors="replace") as fh:
            return fh.read()
    except (OSError, EOFError) as exc:
        raise InputError(
            f"cannot read {path}: {exc}", "the file is corrupt or truncated; rerun the code"
        ) from exc


def find_projwfc_output(folder: Path) -> Path | None:
    """Return the projwfc.x standard output inside ``folder`` (or None)."""
    return _find_by_marker(folder, "Program PROJWFC")


def find_pw_output(folder: Path) -> Path | None:
    """Return the pw.x standard output inside ``folder`` (or None)."""
    return _find_by_marker(folder, "Program PWSCF")


def _find_by_marker(folder: Path, marker: str) -> Path | None:
    candidates = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and re.search(r"\.(out|log|txt|pwo)(\.gz)?$|^stdout", p.name)
    )
    for path in candidates:
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", errors="replace") as fh:
                head = fh.read(4000)
        except (OSError, EOFError):
            continue
        if marker in head:
            return path
    return None


def element_of(label: str) -> str:
    """Chemical element of a QE species label (``Pb1`` -> ``Pb``, ``Br_a`` -> ``Br``)."""
    from pymatgen.core.periodic_table import Element

    match = _ELEMENT_RE.match(label.strip().capitalize())
    if match and Element.is_valid_symbol(match.group(0)):
        return match.group(0)
    if match and Element.is_valid_symbol(match.group(0)[0]):
        return match.group(0)[0]
    raise InputError(
        f"cannot tell the element of the species label {label!r}",
        "start species labels with the chemical symbol (e.g. Pb1)",
    )


def _states_table(text: str, source: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Atom index (0-based) and l of every atomic wavefunction, and the atom labels."""
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
    return atom, lval, labels


def _problem_sizes(text: str) -> dict[str, int]:
    sizes = {}
    for key in ("natomwfc", "nbnd", "nkstot"):
        m = re.search(rf"{key}\s*=\s*(\d+)", text)
        if m:
            sizes[key] = int(m.group(1))
    return sizes


def _states_and_components(
    text: str, nwfc: int, source: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Energies of all states and the (state, wfc, weight) triplets printed after them.

    One regex pass over the whole text for the components; the state of each component
    comes from counting components per ``==== e(`` block.
    """
    start = text.find("==== e(")
    body = text[start:] if start >= 0 else ""
    try:
        energies = np.array([float(e) for _, e in _E_RE.findall(body)])
    except ValueError as exc:
        raise InputError(
            f"{source} has an unreadable band energy ({exc})", "rerun projwfc.x"
        ) from exc
    blocks = body.split("==== e(")[1:]
    counts = np.fromiter((b.count("*[#") for b in blocks), dtype=np.int64, count=len(blocks))
    values = np.array(_VAL_RE.findall(body), dtype=np.float64)
    wfc = np.array(_IDX_RE.findall(body), dtype=np.int64) - 1
    if len(values) != counts.sum() or len(wfc) != len(values):
        raise InputError(f"{source} has unreadable projection components", "rerun projwfc.x")
    state = np.repeat(np.arange(len(blocks)), counts)
    if wfc.size and (wfc.max() >= nwfc or wfc.min() < 0):
        raise InputError(
            f"{source} refers to atomic state #{wfc.max() + 1} but lists only {nwfc}",
            "the output is corrupt; rerun projwfc.x",
        )
    return energies, state, wfc, values


def _kpoints(text: str) -> np.ndarray:
    rows = []
    for m in _K_RE.finditer(text):
        nums = _NUM_RE.findall(m.group(1).replace("-", " -"))
        rows.append([float(x) for x in nums[:3]])
    return np.array(rows, dtype=float).reshape(-1, 3)


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


def read_pw_info(path: str | Path | None) -> dict:
    """Facts from a pw.x output needed to weight and occupy states.

    Returns a dict with ``kweights`` (normalised to 1), ``nelec``, ``homo_eV``,
    ``lumo_eV``, ``fermi_eV`` (``fermi_eV`` per spin as a list for two Fermi energies),
    ``lsda``, ``noncollinear`` and ``structure`` (pymatgen dict), each None if absent.
    """
    info: dict = {
        "kweights": None,
        "nelec": None,
        "homo_eV": None,
        "lumo_eV": None,
        "fermi_eV": None,
        "lsda": False,
        "noncollinear": False,
        "structure": None,
        "path": None,
    }
    if path is None:
        return info
    text = read_text(path)
    info["path"] = str(path)
    m = re.search(r"number of electrons\s*=\s*(\S+)", text)
    info["nelec"] = float(m.group(1)) if m else None
    m = re.search(r"number of k points=\s*(\d+)", text)
    if m:
        nk = int(m.group(1))
        wk = re.findall(r"k\(\s*\d+\) = \([^)]*\), wk =\s*(\S+)", text[m.end() :])[:nk]
        w = np.array([float(x) for x in wk])
        info["kweights"] = w / w.sum() if w.size and w.sum() > 0 else None
    info["lsda"] = "SPIN UP" in text or bool(re.search(r"nspin\s*=\s*2|lsda\s*=\s*T", text))
    info["noncollinear"] = "Noncollinear calculation" in text
    for pattern, keys in (
        (r"highest occupied, lowest unoccupied level \(ev\):\s*(\S+)\s+(\S+)", ("homo", "lumo")),
        (r"highest occupied level \(ev\):\s*(\S+)", ("homo",)),
    ):
        hits = re.findall(pattern, text)
        if hits:
            last = hits[-1] if isinstance(hits[-1], tuple) else (hits[-1],)
            for key, val in zip(keys, last, strict=True):
                info[f"{key}_eV"] = float(val)
            break
    hits = re.findall(r"the Fermi energy is\s*(\S+) ev", text)
    if hits:
        info["fermi_eV"] = float(hits[-1])
    hits = re.findall(r"the spin up/dw Fermi energies are\s*(\S+)\s+(\S+) ev", text)
    if hits:
        info["fermi_eV"] = [float(hits[-1][0]), float(hits[-1][1])]
    info["structure"] = _pw_structure(path)
    return info


def _pw_structure(path: str | Path) -> dict | None:
    """Final structure of a pw.x run (pymatgen dict) via ASE, or None if unreadable."""
    try:
        from ase.io import read
        from pymatgen.io.ase import AseAtomsAdaptor

        if str(path).endswith(".gz"):
            import io

            atoms = read(io.StringIO(read_text(path)), format="espresso-out", index=-1)
        else:
            atoms = read(str(path), format="espresso-out", index=-1)
        return AseAtomsAdaptor.get_structure(atoms).as_dict()
    except Exception:  # a structure is a bonus: energies and weights do not need it
        return None


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
        The pw.x output of the same calculation; found in the same folder when omitted.
        Without it, k-points are weighted equally and occupations/Fermi level stay unknown.
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
        Truncated or corrupt output, or a run without atomic projections.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        found = find_projwfc_output(path)
        if found is None:
            raise InputError(f"no projwfc.x output in {path}", "run projwfc.x in that folder")
        path = found
    text = read_text(path)
    src = path.name
    if "Program PROJWFC" not in text:
        raise InputError(f"{src} is not a projwfc.x output", "give the projwfc.x standard output")
    wfc_atom, wfc_l, labels = _states_table(text, src)
    sizes = _problem_sizes(text)
    energies, st, wfc, vals = _states_and_components(text, len(wfc_atom), src)
    kpts = _kpoints(text)
    nbnd = sizes.get("nbnd") or (len(energies) // max(len(kpts), 1))
    nk = sizes.get("nkstot", len(kpts))
    if len(energies) != nk * nbnd or len(kpts) != nk or "JOB DONE" not in text:
        raise InputError(
            f"{src} is truncated: {len(energies)} of {nk * nbnd} band blocks "
            f"({len(kpts)} of {nk} k-points)" + ("" if "JOB DONE" in text else ", no JOB DONE"),
            "rerun projwfc.x and let it finish",
        )
    natoms = len(labels)
    nstates = len(energies)
    elements = {lab: element_of(lab) for lab in set(labels)}
    species = [elements[lab] for lab in labels]
    keep_l = orbitals if orbitals is not None else nstates * natoms * 4 <= ORBITAL_SPLIT_LIMIT
    full = _full_precision(folder, filproj, len(wfc_atom), nstates, dtype)
    if full is not None:
        weights, orb = _sum_dense(full, wfc_atom, wfc_l, natoms, keep_l, dtype)
        precision = "filproj (1e-10)"
    else:
        weights, orb = _sum_sparse(
            st, wfc_atom[wfc], wfc_l[wfc], vals, nstates, natoms, keep_l, dtype
        )
        precision = "stdout (3 decimals, components < 0.001 dropped)"
    pw = read_pw_info(pw_output if pw_output is not None else find_pw_output(folder))
    kindex = np.repeat(np.arange(nk), nbnd)
    spins, kweights = _spins_and_weights(pw, nk, nbnd)
    fermi, occ = _occupations(pw, energies, spins, kindex, nbnd)
    return StateProjections(
        energies=energies,
        weights=weights,
        species=species,
        kweights=kweights,
        spins=spins,
        kindex=kindex,
        occupations=occ,
        orbital_weights=orb,
        fermi_eV=fermi,
        source=f"qe projwfc.x: {path}",
        meta={
            "labels": labels,
            "nbnd": nbnd,
            "nkstot": nk,
            "kpoints_cart_2pi_alat": kpts.tolist(),
            "precision": precision,
            "pw_output": pw["path"],
            "homo_eV": pw["homo_eV"],
            "lumo_eV": pw["lumo_eV"],
            "nelec": pw["nelec"],
            "noncollinear": pw["noncollinear"],
        },
        structure=pw["structure"],
    )


def _full_precision(
    folder: Path, filproj: str | Path | None, nwfc: int, nstates: int, dtype: type
) -> np.ndarray | None:
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


def _sum_dense(
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


def _sum_sparse(
    state: np.ndarray,
    atom: np.ndarray,
    lval: np.ndarray,
    vals: np.ndarray,
    nstates: int,
    natoms: int,
    keep_l: bool,
    dtype,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Accumulate the printed (state, atom, l, weight) components into dense arrays."""
    weights = _accumulate(state * natoms + atom, vals, nstates * natoms, dtype)
    orb = None
    if keep_l:
        keys = (state * natoms + atom) * 4 + np.minimum(lval, 3)
        orb = _accumulate(keys, vals, nstates * natoms * 4, dtype).reshape(nstates, natoms, 4)
    return weights.reshape(nstates, natoms), orb


def _accumulate(keys: np.ndarray, vals: np.ndarray, size: int, dtype) -> np.ndarray:
    """Dense array of ``size`` with ``vals`` summed at ``keys`` (only the used keys sorted)."""
    out = np.zeros(size, dtype=dtype)
    used, inverse = np.unique(keys, return_inverse=True)
    out[used] = np.bincount(inverse, weights=vals, minlength=used.size)
    return out


def _spins_and_weights(pw: dict, nk: int, nbnd: int) -> tuple[np.ndarray, np.ndarray]:
    """Spin channel and normalised k-weight of every state (k-weights sum to 1 per spin)."""
    wk = pw["kweights"]
    lsda = bool(pw["lsda"])
    nk_spin = nk // 2 if lsda and nk % 2 == 0 else nk
    if wk is not None and len(wk) == nk and lsda:
        wk = wk[:nk_spin] / wk[:nk_spin].sum()
    if wk is None or len(wk) != nk_spin:
        wk = np.full(nk_spin, 1.0 / nk_spin)
    spin_k = np.repeat([0, 1], nk_spin) if nk_spin != nk else np.zeros(nk, dtype=int)
    wk_all = np.tile(wk, nk // nk_spin)
    return np.repeat(spin_k, nbnd), np.repeat(wk_all, nbnd)


def _occupations(
    pw: dict, energies: np.ndarray, spins: np.ndarray, kindex: np.ndarray, nbnd: int
) -> tuple[float | None, np.ndarray | None]:
    """Occupation (0/1) of each state from the HOMO or Fermi level, or None if unknown."""
    fermi = pw["fermi_eV"]
    if pw["homo_eV"] is not None:
        level = pw["homo_eV"] + 1e-4
        ref = pw["homo_eV"]
        return ref, (energies <= level).astype(float)
    if isinstance(fermi, list):
        per_state = np.where(spins == 0, fermi[0], fermi[1])
        return float(np.mean(fermi)), (energies <= per_state).astype(float)
    if fermi is not None:
        return float(fermi), (energies <= fermi).astype(float)
    if pw["nelec"] is not None:
        per_band = 1.0 if (pw["noncollinear"] or pw["lsda"]) else 2.0
        nocc = round(pw["nelec"] / per_band)
        if not pw["lsda"] and abs(nocc * per_band - pw["nelec"]) < 1e-6:
            band = np.arange(len(energies)) % nbnd
            occ = (band < nocc).astype(float)
            return float(energies[occ > 0].max()), occ
    return None, None
