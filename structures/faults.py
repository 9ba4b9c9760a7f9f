"""Ruddlesden–Popper (RP) stacking faults between two cubic perovskite grains (seed 003).

An RP fault is a ½a<111> shift between two perovskite blocks: both grains end in an AX
(CsX) layer and the two AX layers meet as a rock-salt double layer, the second one shifted
by (½, ½) in plane so that Cs sits over X. The periodic model stacks, along c,

    grain A: AX (BX2 AX) x layers_a | fault | grain B (shifted ½,½): AX (BX2 AX) x layers_b | fault

so the cell holds two faults and is charge neutral: A_(nA+1) B_nA X_(3nA+1) plus
A_(nB+1) B_nB X'_(3nB+1) (3 + 3 layers of CsPbBr3/CsPbI3: Cs8Pb6Br10I10). Both grains share
one in-plane lattice constant (the mean of the two by default, i.e. each grain strained by
half the mismatch); each keeps its own out-of-plane spacing. The AX–AX distance across the
fault defaults to the Shannon ionic-radius sum r(Cs+) + r(X-), averaged over both halides
(3.75 Å for Br/I; the CsI rock-salt layers of Cs2PbI2Cl2 are 3.68 Å apart).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from perovflow.errors import InputError

if TYPE_CHECKING:
    from pymatgen.core import Structure

HALIDES = ("F", "Cl", "Br", "I")


def _perovskite_roles(name: str) -> tuple[str, str, str, float, str]:
    """Return (A, B, X, a, formula) of a cubic ABX3 prototype."""
    from perovflow.structures.prototypes import build_prototype

    prim = build_prototype(name, cell="primitive")
    abc = prim.lattice.abc
    counts = prim.composition.as_dict()
    xs = [el for el, n in counts.items() if round(n) == 3]
    if len(prim) != 5 or not xs or not np.allclose(abc, abc[0], atol=1e-3):
        raise InputError(
            f"{name} is not a cubic ABX3 perovskite (5-atom cubic cell)",
            "use a cubic prototype such as CsPbBr3-cubic or CsPbI3-cubic",
        )
    x = xs[0]
    others = [s for s in prim if s.specie.symbol != x]
    x_site = next(s for s in prim if s.specie.symbol == x)
    b_site = min(others, key=lambda s: s.distance(x_site))
    a_site = next(s for s in others if s is not b_site)
    return (
        a_site.specie.symbol,
        b_site.specie.symbol,
        x,
        float(abc[0]),
        prim.composition.reduced_formula,
    )


def _grain(
    roles, n: int, z0: float, shift: float, domain: str
) -> list[tuple[str, list[float], str]]:
    """Sites (element, [x, y (fractional), z (Å)], domain) of one AX-terminated grain."""
    a_el, b_el, x_el, a, _ = roles
    sites = []
    for k in range(2 * n + 1):
        z = z0 + k * a / 2
        if k % 2 == 0:  # AX layer
            sites += [
                (a_el, [0.5 + shift, 0.5 + shift, z], domain),
                (x_el, [shift, shift, z], domain),
            ]
        else:  # BX2 layer
            sites += [
                (b_el, [shift, shift, z], domain),
                (x_el, [0.5 + shift, shift, z], domain),
                (x_el, [shift, 0.5 + shift, z], domain),
            ]
    return sites


def _parse_lateral(lateral: str) -> tuple[int, int]:
    try:
        nx, ny = (int(v) for v in lateral.lower().split("x"))
    except ValueError:
        raise InputError(f"bad lateral size {lateral!r}", "use NxM, e.g. 1x1 or 2x2") from None
    if nx < 1 or ny < 1 or nx * ny > 36:
        raise InputError(f"lateral size {lateral} out of range", "use 1x1 up to 6x6")
    return nx, ny


def rp_fault(
    a: str = "CsPbBr3-cubic",
    b: str = "CsPbI3-cubic",
    layers_a: int = 3,
    layers_b: int = 3,
    lateral: str = "1x1",
    gap: float | None = None,
    in_plane: float | None = None,
) -> Structure:
    """Build a periodic model of two perovskite grains separated by RP faults.

    Parameters
    ----------
    a, b
        Cubic ABX3 prototypes of the two grains.
    layers_a, layers_b
        BX2 (octahedral) layers per grain; each grain is AX-terminated on both sides.
    lateral
        In-plane repetition, ``"1x1"`` or ``"2x2"`` (``NxM``).
    gap
        AX–AX distance across the fault (Å); default: mean Shannon r(A+) + r(X-).
    in_plane
        Shared in-plane lattice constant (Å); default: mean of the two grains.

    Returns
    -------
    Structure
        Site property ``domain`` (grain formula, e.g. ``CsPbBr3`` / ``CsPbI3``).
    """
    from pymatgen.core import Lattice, Species, Structure

    if not (1 <= layers_a <= 20 and 1 <= layers_b <= 20):
        raise InputError("layers per grain must be 1 to 20", "use e.g. --layers 3")
    ra, rb = _perovskite_roles(a), _perovskite_roles(b)
    dom_a, dom_b = ra[4], rb[4]
    if dom_a == dom_b:
        dom_a, dom_b = f"{dom_a}:a", f"{dom_b}:b"
    if gap is None:
        gap = float(
            np.mean(
                [Species(r[0], 1).ionic_radius + Species(r[2], -1).ionic_radius for r in (ra, rb)]
            )
        )
    a_par = in_plane or (ra[3] + rb[3]) / 2
    sites = _grain(ra, layers_a, 0.0, 0.0, dom_a)
    z_b = layers_a * ra[3] + gap
    sites += _grain(rb, layers_b, z_b, 0.5, dom_b)
    c = z_b + layers_b * rb[3] + gap
    species = [s[0] for s in sites]
    coords = [[x % 1.0, y % 1.0, z / c] for _, (x, y, z), _ in sites]
    struct = Structure(
        Lattice.tetragonal(a_par, c),
        species,
        coords,
        site_properties={"domain": [s[2] for s in sites]},
    )
    nx, ny = _parse_lateral(lateral)
    if (nx, ny) != (1, 1):
        struct.make_supercell([nx, ny, 1])
    return struct


def _layers(structure: Structure, tol: float = 0.8) -> list[tuple[float, set[str]]]:
    """Atomic layers along c: (mean z in Å, elements), sorted by z."""
    z = np.mod(structure.frac_coords[:, 2], 1.0) * structure.lattice.c
    order = np.argsort(z)
    layers: list[list[int]] = []
    for i in order:
        if layers and z[i] - z[layers[-1][-1]] < tol:
            layers[-1].append(i)
        else:
            layers.append([i])
    return [(float(np.mean(z[idx])), {structure[i].specie.symbol for i in idx}) for idx in layers]


def fault_planes(structure: Structure, b_element: str | None = None) -> list[float]:
    """Heights (Å along c) of the RP faults: midpoints between two adjacent AX layers.

    An AX layer is a layer without the B cation (Pb); a fault is where two of them follow
    each other (periodically) with no BX2 layer in between.
    """
    b_element = b_element or "Pb"
    layers = _layers(structure)
    c = structure.lattice.c
    planes = []
    for k, (z, els) in enumerate(layers):
        z_next, els_next = layers[(k + 1) % len(layers)]
        if b_element not in els and b_element not in els_next:
            dz = (z_next - z) % c
            planes.append(float((z + dz / 2) % c))
    return sorted(planes)


def _distance_to_planes(z: float, planes: list[float], c: float) -> float:
    d = np.abs((np.asarray(planes) - z + c / 2) % c - c / 2)
    return float(d.min())


def place_halide_vacancy(
    structure: Structure,
    position: Literal["near", "far"] = "near",
    element: str | None = None,
) -> tuple[Structure, dict]:
    """Remove one halide near an RP fault (its first AX layer) or far from it (grain middle).

    Parameters
    ----------
    structure
        An RP-fault model from :func:`rp_fault` (or any cell with AX–AX double layers).
    position
        ``"near"``: the halide closest to a fault plane; ``"far"``: the halide farthest from
        every fault plane.
    element
        Halide to remove; default: the heaviest halide present (I in CsPbBr3/CsPbI3, as in
        the iodide-vacancy simulations of seed 003).

    Returns
    -------
    (Structure, dict)
        The structure without that halide, and ``{"index", "element", "domain",
        "distance_to_fault_A", "position", "fault_planes_z_A"}``.
    """
    from pymatgen.core.periodic_table import Element

    if position not in ("near", "far"):
        raise InputError(f"unknown vacancy position {position!r}", "use near or far")
    present = [el for el in HALIDES if el in {s.specie.symbol for s in structure}]
    if element is None:
        if not present:
            raise InputError("the structure contains no halide", "build it with rp_fault")
        element = max(present, key=lambda el: Element(el).Z)
    if element not in present:
        raise InputError(
            f"no {element} halide in the structure", f"choose one of {', '.join(present) or 'none'}"
        )
    planes = fault_planes(structure)
    if not planes:
        raise InputError("no RP fault found in the structure", "build the model with rp_fault")
    c = structure.lattice.c
    cand = [i for i, s in enumerate(structure) if s.specie.symbol == element]
    dist = {i: _distance_to_planes(structure[i].frac_coords[2] % 1.0 * c, planes, c) for i in cand}
    pick = (min if position == "near" else max)(cand, key=lambda i: (round(dist[i], 3), i))
    out = structure.copy()
    out.remove_sites([pick])
    info = {
        "index": pick,
        "element": element,
        "domain": structure.site_properties.get("domain", [None] * len(structure))[pick],
        "distance_to_fault_A": round(dist[pick], 3),
        "position": position,
        "fault_planes_z_A": [round(p, 3) for p in planes],
    }
    return out, info
