"""Reader of pw.x's ``data-file-schema.xml`` (the ``qes`` schema) through ``qeschema``.

pw.x writes ``<outdir>/<prefix>.save/data-file-schema.xml`` on every run and projwfc.x reads
it, so a projwfc.x folder always has it even where the pw.x standard output is gone. The
file is decoded by ``qeschema.PwDocument`` (QE's own schema, types from the XSD) and reduced
to the facts the projection parser needs:

* spin: ``lsda`` (two collinear channels), ``noncolin`` and ``spinorbit``;
* per k-point: the weight (normalised to 1), the eigenvalues and the occupations, in eV and
  0..1 per state (one electron per state for non-collinear runs, as QE stores them);
* Fermi level, or HOMO/LUMO for fixed occupations, or the two spin Fermi energies;
* the number of electrons and the final structure (pymatgen dict).

The result is the same dict as :func:`perovflow.engines.qe.pwout.read_pw_info` returns, plus
``eigenvalues_eV``/``occupations`` arrays of shape (channels, k, bands).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from perovflow.engines.qe.files import element_of, read_text
from perovflow.engines.qe.inputs import BOHR_A, RY_EV
from perovflow.errors import InputError

HARTREE_EV = 2.0 * RY_EV


@cache
def _document_class() -> Any:
    """One ``PwDocument`` (its XSD schema takes ~0.3 s to build, so it is built once)."""
    import qeschema

    return qeschema.PwDocument()


def read_pw_xml(path: str | Path) -> dict[str, Any]:
    """Facts of a pw.x run from its ``data-file-schema.xml``.

    Returns
    -------
    dict
        ``kweights`` (nks,), ``eigenvalues_eV`` and ``occupations`` (channels, nks, nbnd),
        ``nelec``, ``homo_eV``, ``lumo_eV``, ``fermi_eV`` (a list of two for two spin Fermi
        energies), ``lsda``, ``noncollinear``, ``lspinorb``, ``nspin`` (1, 2 or 4 as QE
        counts), ``structure`` (pymatgen dict) and ``path``.

    Raises
    ------
    InputError
        The file is not a readable pw.x XML data file, or has no band structure.
    """
    doc = _document_class()
    try:
        if str(path).endswith(".gz"):
            doc.from_xml(read_text(path), validation="skip")
        else:
            doc.read(str(path), validation="skip")
        root = doc.to_dict(validation="skip")
        out = next(iter(root.values()))["output"]
        bands = out["band_structure"]
    except Exception as exc:  # qeschema/xmlschema/ElementTree raise many kinds
        raise InputError(
            f"{path} is not a readable pw.x data file ({type(exc).__name__}: {exc})",
            "rerun pw.x; it writes <outdir>/<prefix>.save/data-file-schema.xml",
        ) from exc
    lsda, noncolin = bool(bands.get("lsda")), bool(bands.get("noncolin"))
    info: dict[str, Any] = {
        "path": str(path),
        "lsda": lsda,
        "noncollinear": noncolin,
        "lspinorb": bool(bands.get("spinorbit")),
        "nspin": 4 if noncolin else (2 if lsda else 1),
        "nelec": _float(bands.get("nelec")),
        **_levels(bands),
        **_ks_energies(bands, lsda),
        "structure": _structure(out.get("atomic_structure")),
    }
    return info


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _levels(bands: dict[str, Any]) -> dict[str, Any]:
    """HOMO/LUMO (fixed occupations), Fermi level or the two spin Fermi levels, in eV."""
    homo, lumo = (
        _float(bands.get("highestOccupiedLevel")),
        _float(bands.get("lowestUnoccupiedLevel")),
    )
    fermi: float | list[float] | None = _float(bands.get("fermi_energy"))
    two = bands.get("two_fermi_energies")
    if two is not None:
        fermi = [float(x) * HARTREE_EV for x in two]
    elif fermi is not None:
        fermi *= HARTREE_EV
    return {
        "homo_eV": None if homo is None else homo * HARTREE_EV,
        "lumo_eV": None if lumo is None else lumo * HARTREE_EV,
        "fermi_eV": fermi,
    }


def _ks_energies(bands: dict[str, Any], lsda: bool) -> dict[str, Any]:
    """k weights (sum 1), eigenvalues (eV) and occupations, shaped (channels, k, bands)."""
    ks = bands["ks_energies"]
    ks = ks if isinstance(ks, list) else [ks]
    weights = np.array([float(k["k_point"]["@weight"]) for k in ks])
    eig = np.array([_values(k["eigenvalues"]) for k in ks]) * HARTREE_EV
    occ = np.array([_values(k["occupations"]) for k in ks])
    nchan = 2 if lsda else 1
    nk, nvals = eig.shape
    if nvals % nchan:
        raise InputError("the pw.x data file has an odd number of LSDA eigenvalues", "rerun pw.x")
    # per k-point QE lists the spin-up bands, then the spin-down ones
    eig = eig.reshape(nk, nchan, nvals // nchan).transpose(1, 0, 2)
    occ = occ.reshape(nk, nchan, nvals // nchan).transpose(1, 0, 2)
    return {
        "kweights": weights / weights.sum() if weights.sum() > 0 else np.full(nk, 1.0 / nk),
        "kpoints_cart_2pi_alat": np.array([k["k_point"]["$"] for k in ks], dtype=float),
        "eigenvalues_eV": eig,
        "occupations": occ,
    }


def _values(item: Any) -> list[float]:
    return item["$"] if isinstance(item, dict) else item


def _structure(atomic: dict[str, Any] | None) -> dict[str, Any] | None:
    """The final cell and positions (bohr in the file) as a pymatgen Structure dict."""
    if not atomic:
        return None
    from pymatgen.core import Lattice, Structure

    atoms = atomic["atomic_positions"]["atom"]
    atoms = atoms if isinstance(atoms, list) else [atoms]
    cell = atomic["cell"]
    lattice = Lattice(np.array([cell["a1"], cell["a2"], cell["a3"]], dtype=float) * BOHR_A)
    species = [element_of(a["@name"]) for a in atoms]
    coords = np.array([a["$"] for a in atoms], dtype=float) * BOHR_A
    structure = Structure(lattice, species, coords, coords_are_cartesian=True)
    return structure.as_dict()
