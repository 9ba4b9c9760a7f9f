"""Pseudopotentials for QE and CP2K: one GTH-PBE family for both codes, or the user's UPF folder.

The default family ``gth-pbe`` comes from CP2K's data (``GTH_POTENTIALS`` in
``settings.cp2k.data_dir``, Debian package cp2k-data). For each element the potential is the
one whose valence (``q``) matches the MOLOPT basis set of the protocol (e.g. Cs q9, Pb q4,
Br q7), so QE and CP2K see the same ionic cores. CP2K reads ``GTH_POTENTIALS`` itself and
only needs the potential name. For pw.x the potential is converted on demand into
``settings.project_dir/pseudos/gth-pbe/``:

* ``<El>.<name>.upf`` (when CP2K is installed): the analytic potential tabulated on QE's GTH
  mesh plus CP2K ATOM's pseudo-atomic orbitals (see :mod:`perovflow.engines.qe.upf`), so
  projwfc.x works. Checked against QE's analytic reader: PbBr energies agree to 1e-6 Ry.
* ``<El>.<name>.gth`` otherwise: ABINIT's HGH format (``pspcod 10``), which QE's ``readgth``
  (upflib) reads for any file ending in ``.gth``; it has no atomic wavefunctions, and QE 6.7
  ignores f projectors in it (see :func:`to_abinit_hgh`).

A user folder (``settings.qe.pseudo_dir``; SSSP, GBRV, pslibrary...) is searched for
``<Element>[._-]*.upf`` (case-insensitive) instead.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from perovflow.engines.schemas import PseudoInfo
from perovflow.errors import EngineError

DEFAULT_FAMILY = "gth-pbe"
DEFAULT_BASIS = "DZVP-MOLOPT-SR-GTH"


@dataclass(frozen=True)
class GTHPotential:
    """One entry of a CP2K ``GTH_POTENTIALS`` file (Hartree atomic units).

    Attributes
    ----------
    element, name
        Symbol and potential name (e.g. ``Pb``, ``GTH-PBE-q4``).
    aliases
        Other names on the header line (``GTH-PBE`` marks CP2K's default).
    nelec
        Valence electrons per angular momentum (s, p, d, f).
    rloc, cexp
        Local part: radius and polynomial coefficients C1..C4.
    projectors
        One ``(r_l, h)`` per angular momentum l = 0, 1, ...; ``h`` is the full symmetric
        coupling matrix (list of rows).
    """

    element: str
    name: str
    aliases: tuple[str, ...]
    nelec: tuple[int, ...]
    rloc: float
    cexp: tuple[float, ...]
    projectors: tuple[tuple[float, tuple[tuple[float, ...], ...]], ...]

    @property
    def valence(self) -> int:
        """Number of valence electrons (the ``q`` of the name)."""
        return sum(self.nelec)


@dataclass(frozen=True)
class Pseudo:
    """A pseudopotential ready for one code.

    Attributes
    ----------
    element
        Chemical symbol.
    name
        File name (QE) or potential name for CP2K (e.g. ``GTH-PBE-q4``).
    path
        File the code reads (the ``.gth``/``.upf`` file; ``GTH_POTENTIALS`` for CP2K).
    md5
        md5 of that file.
    family
        ``gth-pbe`` or the user's family name.
    valence
        Valence electrons when known (GTH), else None.
    """

    element: str
    name: str
    path: Path
    md5: str
    family: str
    valence: int | None = None

    def info(self) -> PseudoInfo:
        """Return the record stored in the task document."""
        return PseudoInfo(element=self.element, name=self.name, md5=self.md5, family=self.family)


def _is_number(token: str) -> bool:
    return re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eEdD][-+]?\d+)?", token) is not None


def _split_entries(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Split a GTH file into (header tokens, numeric rows) per potential."""
    entries: list[tuple[list[str], list[list[str]]]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = line.split()
        if not _is_number(tokens[0]):
            entries.append((tokens, []))
        elif entries:
            entries[-1][1].append(tokens)
    return entries


def _parse_entry(header: list[str], rows: list[list[str]]) -> GTHPotential | None:
    """Build one potential; None for formats this reader does not handle (NLCC, SOC)."""
    try:
        nelec = tuple(int(t) for t in rows[0])
        stream = [float(t.replace("D", "E").replace("d", "e")) for row in rows[1:] for t in row]
        rloc, nexp = stream[0], int(stream[1])
        cexp = tuple(stream[2 : 2 + nexp])
        pos = 2 + nexp
        nprj = int(stream[pos])
        pos += 1
        projectors = []
        for _ in range(nprj):
            r_l, n = stream[pos], int(stream[pos + 1])
            pos += 2
            h = [[0.0] * n for _ in range(n)]
            for i in range(n):
                for j in range(i, n):
                    h[i][j] = h[j][i] = stream[pos]
                    pos += 1
            projectors.append((r_l, tuple(tuple(row) for row in h)))
        if pos != len(stream):  # SOC k-matrices or NLCC blocks: not a plain GTH entry
            return None
    except (IndexError, ValueError):
        return None
    return GTHPotential(
        element=header[0],
        name=header[1],
        aliases=tuple(header[2:]),
        nelec=nelec,
        rloc=rloc,
        cexp=cexp,
        projectors=tuple(projectors),
    )


@cache
def _read_potentials(path: str, mtime: float) -> dict[str, list[GTHPotential]]:
    out: dict[str, list[GTHPotential]] = {}
    for header, rows in _split_entries(Path(path).read_text(errors="replace")):
        pot = _parse_entry(header, rows)
        if pot is not None:
            out.setdefault(pot.element.lower(), []).append(pot)
    return out


def read_gth_potentials(path: Path) -> dict[str, list[GTHPotential]]:
    """Parse a CP2K GTH potential file; keys are lower-case element symbols."""
    path = Path(path)
    if not path.is_file():
        raise EngineError(
            f"GTH potential file {path} not found",
            "install cp2k-data or set cp2k.data_dir / cp2k.potential_file in the settings",
        )
    return _read_potentials(str(path), path.stat().st_mtime)


@cache
def _basis_valences(path: str, mtime: float, basis: str) -> dict[str, set[int]]:
    """Valences q for which ``<basis>-q<N>`` exists, per lower-case element."""
    pattern = re.compile(rf"^\s*([A-Z][a-z]?)\s+.*\b{re.escape(basis)}-q(\d+)\b")
    out: dict[str, set[int]] = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        m = pattern.match(line)
        if m:
            out.setdefault(m.group(1).lower(), set()).add(int(m.group(2)))
    return out


def choose_gth(element: str, xc: str = "PBE", basis: str = DEFAULT_BASIS) -> GTHPotential:
    """Pick the GTH potential of ``element`` that CP2K would pair with ``basis``.

    Preference: the ``q`` for which ``<basis>-q<N>`` exists in the basis file; otherwise
    CP2K's default (the ``GTH-<XC>`` alias); otherwise the smallest ``q``.
    """
    from perovflow.settings import get_settings

    cp2k = get_settings().cp2k
    pot_file = _data_file(cp2k.data_dir, cp2k.potential_file)
    prefix = f"GTH-{xc.upper()}-q"
    candidates = [
        p
        for p in read_gth_potentials(pot_file).get(element.lower(), [])
        if p.name.upper().startswith(prefix.upper())
    ]
    if not candidates:
        raise EngineError(
            f"no pseudopotential for element '{element}': no {prefix}N entry in {pot_file}",
            "check the element symbol, or put UPF files in a folder and set qe.pseudo_dir",
        )
    basis_file = _data_file(cp2k.data_dir, cp2k.basis_file)
    wanted: set[int] = set()
    if basis_file.is_file():
        wanted = _basis_valences(str(basis_file), basis_file.stat().st_mtime, basis).get(
            element.lower(), set()
        )
    for pot in sorted(candidates, key=lambda p: p.valence):
        if pot.valence in wanted:
            return pot
    default = [p for p in candidates if f"GTH-{xc.upper()}" in p.aliases]
    return default[0] if default else min(candidates, key=lambda p: p.valence)


def _data_file(data_dir: Path, name: str) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() else Path(data_dir).expanduser() / path


def to_abinit_hgh(pot: GTHPotential, znucl: int, pspxc: int = 11) -> str:
    """Write ``pot`` in ABINIT's HGH format (pspcod 10), the format QE's ``readgth`` reads.

    ``lmax`` is the highest projector channel; ``lloc`` is set above it (QE ignores it for
    GTH but uses ``lmax == lloc`` to mean "no projectors"). Spin-orbit k-matrices are zeros.
    Caveat (measured): QE 6.7's analytic GTH code effectively drops f projectors (l = 3,
    e.g. Cs q9): a CsBr cell gives the energy of the UPF *without* its f channel to 1e-7 Ry,
    1.8 mRy above the full UPF. The UPF route is therefore the default.
    """
    nproj = len(pot.projectors)
    lmax = max(nproj - 1, 0)
    lloc = lmax + 1 if nproj else 0
    lines = [
        f"{pot.element} {pot.name} (CP2K GTH_POTENTIALS) converted by perovflow",
        f"{znucl} {pot.valence} 240101    zatom, zion, pspdat",
        f"10 {pspxc} {lmax} {lloc} 2001 0    pspcod, pspxc, lmax, lloc, mmax, r2well",
        f"{pot.rloc:.10f} {len(pot.cexp)} " + " ".join(f"{c:.10f}" for c in pot.cexp),
        f"{nproj}    nnonloc",
    ]
    channels = pot.projectors or ((0.0, ()),)
    for ll, (r_l, h) in enumerate(channels):
        n = len(h)
        first = " ".join(f"{h[0][j]:.10f}" for j in range(n)) if n else ""
        lines.append(f"{r_l:.10f} {n} {first}".rstrip())
        lines += [" ".join(f"{h[i][j]:.10f}" for j in range(i, n)) for i in range(1, n)]
        if ll > 0:  # spin-orbit coupling matrix, absent from scalar-relativistic GTH
            lines += [" ".join("0.0" for _ in range(i, n)) for i in range(n)]
    return "\n".join(lines) + "\n"


def md5_file(path: Path) -> str:
    """Return the md5 hex digest of a file."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _entry_tag(pot: GTHPotential) -> str:
    """Short fingerprint of the potential's parameters (detects a changed data file)."""
    return hashlib.sha1(repr(pot).encode()).hexdigest()[:12]


def _gth_for_qe(element: str, cache_dir: Path) -> Pseudo:
    """Convert the chosen GTH potential for pw.x (cached, atomic writes).

    With CP2K installed the file is a UPF with pseudo-atomic wavefunctions (projwfc.x and
    atomic starting wavefunctions need them); otherwise QE's analytic ``.gth`` format.
    """
    import shutil

    from pymatgen.core import Element

    from perovflow.settings import get_settings

    pot = choose_gth(element)
    tag = f"fingerprint {_entry_tag(pot)}"
    cp2k = get_settings().cp2k
    z = Element(pot.element).Z
    upf_path = cache_dir / f"{pot.element}.{pot.name}.upf"
    if shutil.which(cp2k.cmd.split()[0]):
        if not upf_path.is_file() or tag not in upf_path.read_text()[:2000]:
            from perovflow.engines.qe.upf import atom_wavefunctions, gth_to_upf

            pot_file = _data_file(cp2k.data_dir, cp2k.potential_file)
            orbitals = atom_wavefunctions(pot, pot_file, cp2k.cmd)
            _atomic_write(upf_path, gth_to_upf(pot, z, orbitals, f"{pot_file} ({tag})"))
        path = upf_path
    else:
        path = cache_dir / f"{pot.element}.{pot.name}.gth"
        text = to_abinit_hgh(pot, z)
        if not path.is_file() or path.read_text() != text:
            _atomic_write(path, text)
    return Pseudo(pot.element, path.name, path, md5_file(path), DEFAULT_FAMILY, pot.valence)


def _gth_for_cp2k(element: str) -> Pseudo:
    from perovflow.settings import get_settings

    cp2k = get_settings().cp2k
    pot_file = _data_file(cp2k.data_dir, cp2k.potential_file)
    pot = choose_gth(element)
    return Pseudo(pot.element, pot.name, pot_file, md5_file(pot_file), DEFAULT_FAMILY, pot.valence)


def _user_upf(element: str, folder: Path, family: str) -> Pseudo:
    pattern = re.compile(rf"^{re.escape(element)}([._-].*)?\.upf$", re.IGNORECASE)
    matches = sorted(p for p in folder.iterdir() if p.is_file() and pattern.match(p.name))
    if not matches:
        raise EngineError(
            f"no pseudopotential for {element} in {folder}",
            f"add a file named {element}.<anything>.upf to {folder} or unset qe.pseudo_dir "
            "to use the built-in gth-pbe family",
        )
    path = matches[0]
    return Pseudo(element, path.name, path, md5_file(path), family)


def get_pseudos(
    elements: list[str] | set[str] | tuple[str, ...],
    code: Literal["qe", "cp2k"] = "qe",
    family: str | None = None,
    soc: bool = False,
) -> dict[str, Pseudo]:
    """Return one :class:`Pseudo` per element, converting GTH files for QE on demand.

    Parameters
    ----------
    elements
        Chemical symbols (duplicates are fine).
    code
        ``qe`` (a file per element for pw.x) or ``cp2k`` (potential names in GTH_POTENTIALS).
    family
        ``gth-pbe`` forces the built-in family. Otherwise, when ``settings.qe.pseudo_dir``
        is set, its UPF files are used and recorded under this name (default: the setting
        ``qe.pseudo_family``, or the folder name).
    soc
        Spin–orbit run (QE): fully relativistic potentials only, see
        :func:`perovflow.engines.fr_pseudos.soc_pseudos`.

    Raises
    ------
    EngineError
        If an element has no potential; the message names the element and folders searched.
    """
    from perovflow.settings import get_settings

    if soc and code == "qe":
        from perovflow.engines.fr_pseudos import soc_pseudos

        return soc_pseudos(elements, family)
    settings = get_settings()
    folder = None
    if code == "qe" and settings.qe.pseudo_dir is not None and family != DEFAULT_FAMILY:
        folder = settings.resolved(settings.qe.pseudo_dir)
        if not folder.is_dir():
            raise EngineError(
                f"pseudopotential folder {folder} does not exist",
                "fix qe.pseudo_dir in the settings (perovflow config)",
            )
        if family is None:
            named = settings.qe.pseudo_family
            family = named if named != DEFAULT_FAMILY else folder.name
    out: dict[str, Pseudo] = {}
    for el in sorted(set(elements)):
        if code == "cp2k":
            out[el] = _gth_for_cp2k(el)
        elif folder is not None:
            out[el] = _user_upf(el, folder, family or folder.name)
        else:
            cache_dir = settings.resolved(settings.project_dir) / "pseudos" / DEFAULT_FAMILY
            out[el] = _gth_for_qe(el, cache_dir)
    return out


def pseudo_dir_for(pseudos: dict[str, Pseudo]) -> Path:
    """The single folder that holds all files of ``pseudos`` (pw.x reads one pseudo_dir)."""
    folders = {p.path.parent for p in pseudos.values()}
    if len(folders) != 1:
        raise EngineError(
            f"pseudopotentials are spread over several folders: {sorted(map(str, folders))}",
            "put all UPF files in one folder (qe.pseudo_dir)",
        )
    return folders.pop()
