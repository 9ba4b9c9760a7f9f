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

**Exception for pw.x: sodium.** GTH-PBE-q9 Na (projector radii 0.13-0.14 bohr) does not
converge in plane waves (NaCl: 15 eV/atom between 80 and 120 Ry, the same with QE's own
analytic reader), so pw.x gets ``Na.sr.upf`` of the ``ld1-sr-pbe`` family instead: a
scalar-relativistic Troullier–Martins potential with the same q9 valence, generated and
verified by ld1.x on first use (:func:`perovflow.engines.qe.ld1.sr_pseudo_file`; recipe in
:data:`~perovflow.engines.qe.ld1_recipes.SR_RECIPES`) into the same folder, since pw.x reads
one ``pseudo_dir``. Its :class:`Pseudo` says ``family="ld1-sr-pbe"``. CP2K keeps GTH-PBE-q9.

A user folder (``settings.qe.pseudo_dir``; SSSP, GBRV, pslibrary...) is searched for
``<Element>[._-]*.upf`` (case-insensitive) instead.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from perovflow.engines.gth import DEFAULT_BASIS as DEFAULT_BASIS
from perovflow.engines.gth import GTHPotential as GTHPotential
from perovflow.engines.gth import choose_gth as choose_gth
from perovflow.engines.gth import data_file
from perovflow.engines.gth import read_gth_potentials as read_gth_potentials
from perovflow.engines.gth import to_abinit_hgh as to_abinit_hgh
from perovflow.engines.schemas import PseudoInfo
from perovflow.errors import EngineError

DEFAULT_FAMILY = "gth-pbe"


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
        ``gth-pbe``, ``ld1-sr-pbe`` (pw.x's Na), ``ld1-fr-pbe`` or the user's family name.
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

            pot_file = data_file(cp2k.data_dir, cp2k.potential_file)
            orbitals = atom_wavefunctions(pot, pot_file, cp2k.cmd)
            _atomic_write(upf_path, gth_to_upf(pot, z, orbitals, f"{pot_file} ({tag})"))
        path = upf_path
    else:
        path = cache_dir / f"{pot.element}.{pot.name}.gth"
        text = to_abinit_hgh(pot, z)
        if not path.is_file() or path.read_text() != text:
            _atomic_write(path, text)
    return Pseudo(pot.element, path.name, path, md5_file(path), DEFAULT_FAMILY, pot.valence)


def ld1_pseudo(element: str, cache_dir: Path, rel: int) -> Pseudo:
    """One of perovflow's ld1.x potentials, cached in ``cache_dir``: ``rel=2`` the fully
    relativistic ``ld1-fr-pbe``, ``rel=1`` the scalar-relativistic ``ld1-sr-pbe`` (pw.x's Na,
    whose GTH potential is too hard for plane waves)."""
    from perovflow.engines.qe.inputs import upf_valence
    from perovflow.engines.qe.ld1 import FAMILY, SR_FAMILY, pseudo_file

    path, _report = pseudo_file(element, cache_dir, rel)
    valence = round(upf_valence(str(path)))
    family = FAMILY if rel == 2 else SR_FAMILY
    return Pseudo(element, path.name, path, md5_file(path), family, valence)


def _gth_for_cp2k(element: str) -> Pseudo:
    from perovflow.settings import get_settings

    cp2k = get_settings().cp2k
    pot_file = data_file(cp2k.data_dir, cp2k.potential_file)
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
        ``gth-pbe`` forces the built-in family (for pw.x: GTH, but Na from ``ld1-sr-pbe``,
        see the module docstring). Otherwise, when ``settings.qe.pseudo_dir``
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
    from perovflow.engines.qe.ld1_recipes import SR_RECIPES
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
            out[el] = (
                ld1_pseudo(el, cache_dir, 1) if el in SR_RECIPES else _gth_for_qe(el, cache_dir)
            )
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
