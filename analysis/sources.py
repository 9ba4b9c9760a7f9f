"""Where analysis inputs come from: a calculation folder/file or a stored task id.

* A **folder or file**: the code is detected from the files (``Program PROJWFC``/``Program
  PWSCF`` for QE, in ``*.out``, ``*.pwo`` as ASE names pw.x's output, ``*.log``...; ``CP2K|``
  for CP2K). QE projections come from the projwfc.x output with the run's facts from its
  ``data-file-schema.xml`` (:func:`perovflow.engines.qe.projwfc.parse_projwfc`).
* A **task id** (the uuid of a job in the results store): the job output document, with its
  big fields (projections, bandstructure, trajectory), from the installed
  :class:`perovflow.documents.DocumentSource` (the command line installs the store's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perovflow.documents import task_output
from perovflow.errors import InputError
from perovflow.projections import StateProjections


def is_path(ref: str | Path) -> bool:
    """True when ``ref`` names an existing file or folder."""
    return Path(ref).exists()


def load_task_output(task_id: str) -> dict[str, Any]:
    """The output document of the stored job ``task_id`` (big fields loaded)."""
    return task_output(task_id)


def detect_code(folder: Path) -> str:
    """``qe`` or ``cp2k`` from the output files of ``folder`` (or of a file's folder)."""
    from perovflow.engines.qe.files import find_projwfc_output, find_pw_output

    folder = folder if folder.is_dir() else folder.parent
    if find_projwfc_output(folder) or find_pw_output(folder):
        return "qe"
    for p in folder.iterdir():
        if p.is_file() and p.suffix in (".out", ".log"):
            with open(p, errors="replace") as fh:
                if "CP2K|" in fh.read(20000):
                    return "cp2k"
    raise InputError(
        f"no QE or CP2K output found in {folder}",
        "give the folder of a pw.x/projwfc.x or CP2K calculation",
    )


def load_projections(ref: str | Path) -> StateProjections:
    """State projections from a folder/file (QE projwfc.x, CP2K) or a stored task."""
    if not is_path(ref):
        out = load_task_output(str(ref))
        if not out.get("projections"):
            raise InputError(
                f"task {ref} has no projections", "analyse a DOS task (QE projwfc / CP2K MOs)"
            )
        proj = StateProjections.from_dict(out["projections"])
        if proj.structure is None and out.get("structure"):
            proj.structure = out["structure"]
        proj.meta.setdefault("task_uuid", str(ref))
        proj.meta.setdefault("dir_name", out.get("dir_name"))
        return proj
    path = Path(ref)
    code = detect_code(path)
    proj = _qe_projections(path) if code == "qe" else _cp2k_projections(path)
    proj.meta.setdefault("dir_name", str(path.resolve()))
    return proj


def _qe_projections(path: Path) -> StateProjections:
    """QE projections of a projwfc.x folder or output file."""
    from perovflow.engines.qe.files import find_projwfc_output
    from perovflow.engines.qe.projwfc import parse_projwfc

    if path.is_dir() and find_projwfc_output(path) is None:
        raise InputError(
            f"{path} holds a pw.x run but no projwfc.x output, so no per-atom projections",
            "give the folder of the DOS job (nscf + projwfc.x), or run projwfc.x in this one",
        )
    return parse_projwfc(path)


def _cp2k_projections(path: Path) -> StateProjections:
    """CP2K projections of a calculation folder (the CP2K engine's parser)."""
    from perovflow.engines.cp2k.parsers import read_folder_projections

    return read_folder_projections(path if path.is_dir() else path.parent)


def load_bands_source(ref: str | Path) -> Any:
    """A band-structure source for :func:`perovflow.analysis.bands.analyze_bands`."""
    if is_path(ref):
        return Path(ref)
    out = load_task_output(str(ref))
    if not out.get("bandstructure"):
        raise InputError(f"task {ref} has no band structure", "analyse a bands task")
    return out["bandstructure"]


def load_neb_source(ref: str | Path) -> Any:
    """An NEB source for :func:`perovflow.analysis.neb.analyze_neb`."""
    if is_path(ref):
        return Path(ref)
    out = load_task_output(str(ref))
    if out.get("images"):
        return {"images": out["images"]}
    if out.get("trajectory"):
        return {"images": out["trajectory"]}
    raise InputError(f"task {ref} has no NEB images", "analyse an NEB task")


def provenance(ref: str | Path, proj: StateProjections | None = None) -> dict[str, Any]:
    """Provenance record (task uuid or folder) for reports."""
    if is_path(ref):
        return {"dir_name": str(Path(ref).resolve())}
    out = {"task_uuid": str(ref)}
    if proj is not None and proj.meta.get("dir_name"):
        out["dir_name"] = proj.meta["dir_name"]
    return out
