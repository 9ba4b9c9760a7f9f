"""Atom groups for projected quantities: by element, by a site property, by a defect shell.

A grouping is a dict ``name -> list of atom indices`` (0-based); :func:`group_matrix` turns
it into an indicator matrix ``A`` (natoms, ngroups) so that per-group state weights are one
matrix product ``weights @ A`` (no loop over states).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from perovflow.errors import InputError


def by_element(species: Sequence[str]) -> dict[str, list[int]]:
    """Group atoms by chemical element, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, el in enumerate(species):
        groups.setdefault(str(el), []).append(i)
    return groups


def by_site_property(structure: Any, prop: str = "domain") -> dict[str, list[int]]:
    """Group atoms by a site property (heterostructure domains use ``domain``).

    Raises
    ------
    InputError
        If the structure is missing or no site carries the property.
    """
    if structure is None:
        raise InputError(
            f"grouping by the site property {prop!r} needs the structure",
            "analyse a calculation whose output holds the structure, or pass it",
        )
    values = structure.site_properties.get(prop)
    if values is None or all(v is None for v in values):
        raise InputError(
            f"no site of the structure has the property {prop!r}",
            "build the heterostructure with perovflow (it tags each site's domain) "
            "or group by element/shell instead",
        )
    groups: dict[str, list[int]] = {}
    for i, v in enumerate(values):
        groups.setdefault(str(v), []).append(i)
    return groups


def shell(structure: Any, center: Sequence[float], radius: float, frac: bool = True) -> list[int]:
    """Atoms within ``radius`` (Å) of ``center`` (periodic images included).

    Parameters
    ----------
    structure
        pymatgen Structure.
    center
        Position, fractional (default) or Cartesian (``frac=False``), e.g. a vacancy site.
    radius
        Shell radius in Å.
    """
    if structure is None:
        raise InputError("a defect shell needs the structure", "pass the structure")
    if radius <= 0:
        raise InputError(f"shell radius {radius} Å must be positive", "give a radius > 0")
    cart = structure.lattice.get_cartesian_coords(center) if frac else np.asarray(center)
    sites = structure.get_sites_in_sphere(cart, radius)
    return sorted({int(s.index) for s in sites})


def shell_groups(
    structure: Any, center: Sequence[float], radius: float, frac: bool = True
) -> dict[str, list[int]]:
    """Two groups: the atoms within ``radius`` of ``center`` and the rest."""
    inner = shell(structure, center, radius, frac)
    rest = [i for i in range(len(structure)) if i not in set(inner)]
    return {f"shell<{radius:g}Å": inner, "rest": rest}


def group_matrix(groups: dict[str, list[int]], natoms: int, dtype: type = np.float32) -> np.ndarray:
    """Indicator matrix (natoms, ngroups): ``A[a, g] = 1`` if atom ``a`` is in group ``g``."""
    if not groups:
        raise InputError("no atom groups given", "name at least one group")
    mat = np.zeros((natoms, len(groups)), dtype=dtype)
    for g, idx in enumerate(groups.values()):
        idx = np.asarray(list(idx), dtype=int)
        if idx.size and (idx.min() < 0 or idx.max() >= natoms):
            raise InputError(
                f"atom group refers to atom {int(idx.max())} but there are {natoms} atoms",
                "use 0-based indices of the analysed structure",
            )
        mat[idx, g] = 1.0
    return mat


def resolve_groups(spec: str | dict[str, list[int]] | None, proj: Any) -> dict[str, list[int]]:
    """Turn a grouping spec into groups: ``element``, ``domain``/``prop:<name>`` or a dict."""
    if spec is None or spec == "element":
        return by_element(proj.species)
    if isinstance(spec, dict):
        return {str(k): list(v) for k, v in spec.items()}
    if spec == "domain" or spec.startswith("prop:"):
        prop = "domain" if spec == "domain" else spec.split(":", 1)[1]
        return by_site_property(proj.get_structure(), prop)
    raise InputError(
        f"unknown atom grouping {spec!r}", "use element, domain, prop:<site property> or a dict"
    )
