"""Facts from a pw.x standard output: k weights, electrons, HOMO/LUMO or Fermi level, structure.

The fallback of the projection parser where the run's ``data-file-schema.xml``
(:mod:`perovflow.engines.qe.xml`) is gone; band-structure and formation-energy analyses read
it too. :func:`read_pw_info` returns the same keys as
:func:`perovflow.engines.qe.xml.read_pw_xml`, with the per-state arrays left None.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from perovflow.engines.qe.files import read_text


def read_pw_info(path: str | Path | None) -> dict:
    """Facts from a pw.x output needed to weight and occupy states.

    Returns a dict with ``kweights`` (normalised to 1), ``nelec``, ``homo_eV``,
    ``lumo_eV``, ``fermi_eV`` (``fermi_eV`` per spin as a list for two Fermi energies),
    ``lsda``, ``noncollinear``, ``lspinorb``, ``nspin`` and ``structure`` (pymatgen dict),
    each None (or False) if absent; ``eigenvalues_eV`` and ``occupations`` are always None.
    """
    info: dict = {
        "kweights": None,
        "nelec": None,
        "homo_eV": None,
        "lumo_eV": None,
        "fermi_eV": None,
        "lsda": False,
        "noncollinear": False,
        "lspinorb": False,
        "nspin": None,
        "structure": None,
        "eigenvalues_eV": None,
        "occupations": None,
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
    info["noncollinear"] = "Noncollinear calculation" in text or "with spin-orbit" in text
    info["lspinorb"] = "with spin-orbit" in text
    info["nspin"] = 4 if info["noncollinear"] else (2 if info["lsda"] else 1)
    _levels(text, info)
    info["structure"] = _pw_structure(path)
    return info


def _levels(text: str, info: dict) -> None:
    """HOMO/LUMO or the (spin) Fermi energies, the last printed, into ``info``."""
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
