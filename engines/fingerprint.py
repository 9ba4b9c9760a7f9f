"""What makes two calculations the same: the inputs that change the result, and nothing else.

:func:`environment` collects, for one code and a set of elements, what lies outside a
maker's fields but changes the numbers: the code and its version, the protocol's values (as
``protocols.yaml`` holds them now, not just its name), and checksums of the
pseudopotentials and basis sets. :func:`result_parameters` drops from an input set what only
steers the run (paths, wall-time stops, restart files). Parallel layout (``mpi_prefix``,
pools, threads) and paths never enter: the same calculation on another machine or folder
has the same hash.

Pseudopotential identity, per source:

* ``qe.pseudo_dir`` set: the md5 of each UPF file pw.x reads;
* the built-in GTH family for pw.x: a digest of the potential's parameters in CP2K's
  ``GTH_POTENTIALS`` and the format it is converted to (UPF with CP2K installed, else the
  analytic ``.gth``), so the hash is known before the file is converted;
* CP2K: the md5 of the potential and basis-set files and the potential's name.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

#: pw.x keywords that only steer the run (where files go, when to stop, how to restart)
QE_RUN_ONLY = {
    "control": ("outdir", "prefix", "pseudo_dir", "wfcdir", "max_seconds", "disk_io"),
    "electrons": ("startingpot", "startingwfc"),
}
#: CP2K keywords that are paths or run control (the files' checksums enter instead)
CP2K_RUN_ONLY = {
    ("FORCE_EVAL", "DFT"): ("BASIS_SET_FILE_NAME", "POTENTIAL_FILE_NAME", "WFN_RESTART_FILE_NAME"),
    ("FORCE_EVAL", "DFT", "SCF"): ("SCF_GUESS",),
    ("GLOBAL",): ("WALLTIME", "PROJECT"),
}
_QE_VERSION = re.compile(r"Program PWSCF v\.(\S+)")
_CP2K_VERSION = re.compile(r"CP2K version\s+(\S+)")


def digest(payload: Any) -> str:
    """sha1 of the canonical JSON of ``payload`` (sorted keys)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()


def result_parameters(code: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` without perovflow's private keys and the run-only keywords."""
    out = json.loads(json.dumps({k: v for k, v in params.items() if not k.startswith("_")},
                                default=_plain))  # fmt: skip
    if code == "qe":
        namelists = out.get("input_data", {})
        for section, keys in QE_RUN_ONLY.items():
            block = namelists.get(section, {})
            for key in keys:
                block.pop(key, None)
            if section in namelists and not block:  # an emptied namelist is no namelist
                namelists.pop(section)
    elif code == "cp2k":
        for path, keys in CP2K_RUN_ONLY.items():
            node: Any = out
            for part in path:
                node = node.get(part, {}) if isinstance(node, dict) else {}
            for key in keys:
                node.pop(key, None)
    return out


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


@cache
def _probe_version(code: str, binary: str, mtime: float) -> str:
    """Version printed by ``binary`` (run once per binary and modification time)."""
    argv = [binary] if code == "qe" else [binary, "--version"]
    pattern = _QE_VERSION if code == "qe" else _CP2K_VERSION
    with tempfile.TemporaryDirectory() as tmp:
        try:
            out = subprocess.run(
                argv, cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=20, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
    m = pattern.search(out.stdout + out.stderr)
    return m.group(1) if m else "unknown"


def code_version(code: str) -> str:
    """Version of the code the settings point at (``unknown`` if it cannot be run here)."""
    from perovflow.settings import get_settings

    settings = get_settings()
    if code == "mlip":
        from importlib.metadata import PackageNotFoundError, version

        model = settings.mlip.model
        try:
            return f"{model} {version(model)}"
        except PackageNotFoundError:
            return f"{model} unknown"
    cmd = settings.qe.pw_cmd if code == "qe" else settings.cp2k.cmd
    words = shlex.split(cmd)
    found = shutil.which(words[0]) if words else None
    if not found:
        return "unknown"
    return _probe_version(code, found, Path(found).stat().st_mtime)


def pseudo_checksums(
    code: str, elements: list[str] | set[str], soc: bool = False
) -> dict[str, Any]:
    """Identity of each element's pseudopotential (and CP2K's basis file); see module doc.

    ``soc``: a spin–orbit pw.x run, whose potentials are the fully relativistic ones.
    """
    from perovflow.settings import get_settings

    elements = sorted(set(elements))
    if not elements or code not in ("qe", "cp2k"):
        return {}
    if code == "qe" and soc:
        return _fr_checksums(elements)
    settings = get_settings()
    from perovflow.engines.pseudos import DEFAULT_FAMILY, choose_gth, get_pseudos

    if code == "qe" and settings.qe.pseudo_dir is None:
        fmt = "upf" if shutil.which(shlex.split(settings.cp2k.cmd)[0]) else "gth"
        return {
            el: {"family": DEFAULT_FAMILY, "gth": digest(repr(choose_gth(el))), "format": fmt}
            for el in elements
        }
    found = get_pseudos(elements, code)
    out: dict[str, Any] = {el: {"name": p.name, "md5": p.md5} for el, p in found.items()}
    if code == "cp2k":
        out["basis_file_md5"] = _file_md5(_cp2k_file(settings.cp2k.basis_file))
    return out


def _fr_checksums(elements: list[str]) -> dict[str, Any]:
    """Fully relativistic potentials: the user's files' md5, or perovflow's ld1.x recipes.

    perovflow's own ``ld1-fr-pbe`` file is generated on first use; its identity is the
    fingerprint of its ld1.x inputs, known before the file exists (as the GTH parameters are).
    """
    from perovflow.engines.qe.ld1 import FAMILY, fingerprint
    from perovflow.engines.qe.ld1_recipes import RECIPES
    from perovflow.settings import get_settings

    settings = get_settings()
    if settings.qe.pseudo_dir is not None:  # as get_pseudos(..., soc=True) chooses
        from perovflow.engines.fr_pseudos import soc_pseudos

        found = soc_pseudos(elements, None)
        return {el: {"name": p.name, "md5": p.md5, "fr": True} for el, p in found.items()}
    return {
        el: {"family": FAMILY, "recipe": fingerprint(RECIPES[el]) if el in RECIPES else None}
        for el in elements
    }


def _cp2k_file(name: str) -> Path:
    from perovflow.settings import get_settings

    path = Path(name).expanduser()
    return path if path.is_absolute() else Path(get_settings().cp2k.data_dir).expanduser() / path


def _file_md5(path: Path) -> str | None:
    if not path.is_file():
        return None
    return _md5_cached(str(path), path.stat().st_mtime, path.stat().st_size)


@cache
def _md5_cached(path: str, mtime: float, size: int) -> str:
    from perovflow.engines.pseudos import md5_file

    return md5_file(Path(path))


def environment(
    code: str, elements: list[str] | set[str], protocol: str | None, soc: bool = False
) -> dict[str, Any]:
    """Code, version, protocol values and pseudopotential/basis checksums of a calculation.

    Parameters
    ----------
    code
        ``qe``, ``cp2k`` or ``mlip``.
    elements
        Chemical symbols of the structure.
    protocol
        Protocol name; None: ``settings.protocol`` (what the maker will use at run time).
    soc
        Spin–orbit run (pw.x): the fully relativistic potentials are the ones checksummed.
    """
    from perovflow.engines.protocols import get_protocol
    from perovflow.settings import get_settings

    name = protocol or get_settings().protocol
    values = get_protocol(name, code if code in ("qe", "cp2k", "mlip") else None)
    checksums = pseudo_checksums(code, elements, soc)
    if code == "cp2k" and values.get("basis_files") and elements:  # the protocol's extra files
        checksums["extra_basis_md5"] = {
            f: _file_md5(_cp2k_file(f)) for f in sorted(values["basis_files"])
        }
    return {
        "code": code,
        "version": code_version(code),
        "protocol": values,
        "pseudopotentials": checksums,
    }


def task_hash(code: str, atoms: Any, params: dict[str, Any], calc_type: str, protocol: str) -> str:
    """The task document's ``calc_hash``: input structure, the result-changing input
    parameters of the first attempt, kind and :func:`environment`."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.engines.schemas import calc_hash

    structure = AseAtomsAdaptor.get_structure(atoms).as_dict()
    soc = bool(params.get("input_data", params).get("system", {}).get("lspinorb", False))
    env = environment(code, atoms.get_chemical_symbols(), protocol, soc)
    return calc_hash(structure, result_parameters(code, params), code, calc_type, env)
