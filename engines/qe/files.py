"""Where a QE calculation folder keeps its files, and how to open them.

* ``read_text`` / ``read_bytes``: any output, ``*.gz`` transparently;
* ``find_pw_output`` / ``find_projwfc_output``: the standard outputs, recognised by their
  ``Program PWSCF`` / ``Program PROJWFC`` banner (``*.out``, ``*.pwo`` as ASE's calculator
  names it, ``*.log``, ``*.txt``, ``stdout*``);
* ``find_data_file``: ``<outdir>/<prefix>.save/data-file-schema.xml`` (or ``.xml.gz``), the file pw.x always
  writes and projwfc.x itself reads (the directory projwfc.x printed, else ``projwfc.in``'s
  ``outdir``/``prefix``, else any ``*.save`` folder one or two levels down);
* ``element_of``: the chemical element of a species label.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from perovflow.errors import InputError

OUTPUT_NAME = re.compile(r"\.(out|pwo|log|txt)(\.gz)?$|^stdout")
DATA_FILE = "data-file-schema.xml"
_ELEMENT_RE = re.compile(r"[A-Z][a-z]?")
_XML_DIR_RE = re.compile(r"Reading xml data from directory:\s*\n\s*(\S+)")
_NAMELIST_RE = r"\b{key}\s*=\s*['\"]([^'\"]+)['\"]"


def read_text(path: str | Path) -> str:
    """Read a text file, transparently gunzipping ``*.gz``."""
    return read_bytes(path).decode(errors="replace")


def read_bytes(path: str | Path) -> bytes:
    """The raw bytes of a file, transparently gunzipping ``*.gz``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file {path} does not exist", "give the path of an existing output file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
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
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and OUTPUT_NAME.search(p.name))
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


def find_data_file(folder: Path, projwfc_text: str | None = None) -> Path | None:
    """``data-file-schema.xml`` of the pw.x run in ``folder`` (or None).

    Parameters
    ----------
    folder
        The calculation folder (the one projwfc.x/pw.x ran in).
    projwfc_text
        The projwfc.x output, whose ``Reading xml data from directory:`` line names it.
    """
    candidates: list[Path] = []
    if projwfc_text:
        m = _XML_DIR_RE.search(projwfc_text[:20000])
        if m:
            candidates.append(folder / m.group(1) / DATA_FILE)
            candidates.append(folder / m.group(1) / f"{DATA_FILE}.gz")
    inp = folder / "projwfc.in"
    if inp.is_file():
        text = inp.read_text(errors="replace")
        prefix = re.search(_NAMELIST_RE.format(key="prefix"), text, re.I)
        outdir = re.search(_NAMELIST_RE.format(key="outdir"), text, re.I)
        save = f"{prefix.group(1) if prefix else 'pwscf'}.save"
        candidates.append(folder / (outdir.group(1) if outdir else ".") / save / DATA_FILE)
    for pattern in (f"*.save/{DATA_FILE}", f"*/*.save/{DATA_FILE}"):
        candidates += sorted(folder.glob(pattern)) + sorted(folder.glob(f"{pattern}.gz"))
    return next((p for p in candidates if p.is_file()), None)


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
