"""Per-state atomic projections: the one container that PDOS, IPR and alignment consume.

Parsers of every code (QE ``projwfc.x``, CP2K MO/Mulliken output) produce a
:class:`StateProjections`; nothing downstream needs to know which code ran. It lives in the
core package, beside :mod:`perovflow.electronic`, because the code drivers (``engines``)
write it and ``analysis`` reads it, and neither layer may import the other.

States are flattened over spin and k-points: state ``i`` has an energy, a k-point weight,
a spin index and a row ``weights[i, a]`` = P_ai, the weight of state ``i`` on atom ``a``
(summed over that atom's orbitals). ``orbital_weights[i, a, l]`` optionally splits it by
angular momentum l = s, p, d, f.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perovflow.errors import InputError

L_LABELS = ("s", "p", "d", "f")


@dataclass
class StateProjections:
    """Atomic projections of Kohn–Sham states or molecular orbitals.

    Attributes
    ----------
    energies
        State energies (eV), shape (nstates,).
    weights
        P_ai, shape (nstates, natoms), float32 or float64, non-negative.
    species
        Chemical symbol of each atom, length natoms.
    kweights
        Weight of each state's k-point (sums to 1 per spin over k), shape (nstates,).
    spins
        Spin channel (0 or 1) of each state, shape (nstates,).
    kindex
        k-point index of each state within its spin channel, shape (nstates,).
    occupations
        Occupation (0..1 per spin channel; one electron per state for non-collinear runs)
        of each state, shape (nstates,), as the code smeared it; may be None.
    orbital_weights
        Optional split by l, shape (nstates, natoms, 4).
    fermi_eV
        Fermi level or HOMO energy reported by the code, if known.
    source
        Free text: which code/file produced it.
    meta
        Free-form extras (labels, precision, band count; for QE ``nspin`` (1, 2, 4),
        ``noncolin``, ``lspinorb``, ``homo_eV``/``lumo_eV`` and where the run facts came
        from, ``run_info``: ``xml`` or ``stdout``).
    structure
        The structure the atoms belong to (pymatgen ``Structure.as_dict()``), if known;
        needed for geometric atom groups (defect shells, nearest atoms).
    """

    energies: np.ndarray
    weights: np.ndarray
    species: list[str]
    kweights: np.ndarray | None = None
    spins: np.ndarray | None = None
    kindex: np.ndarray | None = None
    occupations: np.ndarray | None = None
    orbital_weights: np.ndarray | None = None
    fermi_eV: float | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    structure: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.energies = np.asarray(self.energies, dtype=float)
        self.weights = np.asarray(self.weights)
        n = self.energies.shape[0]
        if self.weights.ndim != 2 or self.weights.shape[0] != n:
            raise InputError(
                f"projections are inconsistent: {n} states but weights of shape {self.weights.shape}",
                "regenerate the projections; the output file may be truncated",
            )
        if self.weights.shape[1] != len(self.species):
            raise InputError(
                f"projections cover {self.weights.shape[1]} atoms but the structure has {len(self.species)}",
                "use the output of the same calculation as the structure",
            )
        if self.kweights is None:
            self.kweights = np.ones(n)
        if self.spins is None:
            self.spins = np.zeros(n, dtype=int)
        if self.kindex is None:
            self.kindex = np.zeros(n, dtype=int)

    @property
    def nstates(self) -> int:
        """Number of states."""
        return int(self.energies.shape[0])

    @property
    def natoms(self) -> int:
        """Number of atoms."""
        return int(self.weights.shape[1])

    def get_structure(self):
        """The pymatgen ``Structure`` of the atoms, or None if unknown."""
        if self.structure is None:
            return None
        from pymatgen.core import Structure

        return Structure.from_dict(self.structure)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for a task document (goes to the additional store)."""
        out: dict[str, Any] = {
            "energies": self.energies.tolist(),
            "weights": self.weights.tolist(),
            "species": list(self.species),
            "kweights": np.asarray(self.kweights).tolist(),
            "spins": np.asarray(self.spins).tolist(),
            "kindex": np.asarray(self.kindex).tolist(),
            "fermi_eV": self.fermi_eV,
            "source": self.source,
            "meta": self.meta,
            "structure": self.structure,
        }
        if self.occupations is not None:
            out["occupations"] = np.asarray(self.occupations).tolist()
        if self.orbital_weights is not None:
            out["orbital_weights"] = np.asarray(self.orbital_weights).tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StateProjections:
        """Inverse of :meth:`to_dict`."""
        arrays = {
            k: np.asarray(data[k])
            for k in ("kweights", "spins", "kindex")
            if data.get(k) is not None
        }
        return cls(
            energies=np.asarray(data["energies"]),
            weights=np.asarray(data["weights"]),
            species=list(data["species"]),
            occupations=None
            if data.get("occupations") is None
            else np.asarray(data["occupations"]),
            orbital_weights=None
            if data.get("orbital_weights") is None
            else np.asarray(data["orbital_weights"]),
            fermi_eV=data.get("fermi_eV"),
            source=data.get("source", ""),
            meta=data.get("meta", {}),
            structure=data.get("structure"),
            **arrays,
        )
