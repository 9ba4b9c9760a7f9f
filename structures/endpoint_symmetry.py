"""The symmetry operation that carries one end point of a vacancy hop onto the other.

A vacancy hop between two equivalent sites A and B has end points ``host - B`` (the moving
atom still on A) and ``host - A``. Any operation g of the host with g(B) = A maps the first
onto the second, so the relaxed final end point is g applied to the relaxed initial one: same
energy, forces rotated. Relaxing it again costs as many expensive calls as the first and, on
a flat surface, can stop in another (equivalent or not) minimum, so the two procedures of a
benchmark would start their bands from different end points.

The operation is searched among the space-group operations (spglib) of the host rebuilt from
the two end points; the mapped atoms are reordered to the final end point's indices and moved
by lattice vectors next to its positions, so an interpolated band stays continuous.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ase import Atoms


@dataclass(frozen=True)
class EndpointMap:
    """``x_final[j] = rotation @ x_initial[order[j]] + translation`` (fractional)."""

    rotation: np.ndarray
    translation: np.ndarray
    order: np.ndarray

    def cartesian_rotation(self, cell: np.ndarray) -> np.ndarray:
        """The rotation acting on Cartesian vectors (forces): ``Aᵀ R (Aᵀ)⁻¹``, rows of A the
        lattice vectors."""
        return cell.T @ self.rotation @ np.linalg.inv(cell.T)


def _wrap(delta: np.ndarray) -> np.ndarray:
    return delta - np.round(delta)


def _moving_index(initial: Atoms, final: Atoms) -> int:
    delta = _wrap(final.get_scaled_positions(wrap=False) - initial.get_scaled_positions(wrap=False))
    return int(np.argmax(np.linalg.norm(delta @ initial.cell[:], axis=1)))


def _match(initial: Atoms, final: Atoms, rot: np.ndarray, trans: np.ndarray, tol: float):
    """``order`` with final atom j = image of initial atom order[j], or None."""
    mapped = initial.get_scaled_positions() @ rot.T + trans
    target = final.get_scaled_positions()
    cell = initial.cell[:]
    order = np.full(len(final), -1)
    for j, (frac, number) in enumerate(zip(target, final.numbers, strict=True)):
        same = np.flatnonzero(initial.numbers == number)
        dist = np.linalg.norm(_wrap(mapped[same] - frac) @ cell, axis=1)
        best = int(np.argmin(dist))
        if dist[best] > tol:
            return None
        order[j] = same[best]
    return order if len(set(order.tolist())) == len(order) else None


def _reverses(initial: Atoms, final: Atoms, rot: np.ndarray, trans: np.ndarray, tol: float) -> bool:
    """Whether the operation carries the hop's segment onto itself, reversed: the moving
    atom's hop vector turns into its negative and its mid-point stays (modulo the lattice) -
    in a small cell an operation can swap the two sites only through another periodic image."""
    moving = _moving_index(initial, final)
    start = initial.get_scaled_positions(wrap=False)[moving]
    hop = _wrap(final.get_scaled_positions(wrap=False)[moving] - start)
    mid = start + 0.5 * hop
    cell = initial.cell[:]
    turned = np.linalg.norm((rot @ hop + hop) @ cell)
    moved = np.linalg.norm(_wrap(rot @ mid + trans - mid) @ cell)
    return bool(turned < tol and moved < tol)


def endpoint_map(
    initial: Atoms, final: Atoms, tol: float = 1e-3, swap: bool = False
) -> EndpointMap | None:
    """The host operation carrying ``initial`` onto ``final`` (unrelaxed end points of a
    vacancy hop, same cell and atom order), or None when the two sites are not equivalent.

    ``tol``: Å, on every atom, and spglib's symprec on the rebuilt host. ``swap``: only an
    operation that reverses the hop - its segment carried onto itself, the mid-point fixed
    (it also carries ``final`` back onto ``initial`` and leaves the hop's dividing surface in
    place; see :func:`symmetrize_image`).
    """
    import spglib

    if len(initial) != len(final) or not np.allclose(initial.cell[:], final.cell[:]):
        return None
    moving = _moving_index(initial, final)
    host = initial.copy()
    host.append(final[moving])
    cell = (host.cell[:], host.get_scaled_positions(), host.numbers)
    ops = spglib.get_symmetry(cell, symprec=tol) or {"rotations": [], "translations": []}
    for rot, trans in zip(ops["rotations"], ops["translations"], strict=True):
        order = _match(initial, final, rot, trans, tol)
        if order is not None and swap and not _reverses(initial, final, rot, trans, tol):
            continue
        if order is not None:
            return EndpointMap(np.array(rot, float), np.array(trans, float), order)
    return None


def map_positions(relaxed: Atoms, op: EndpointMap, final: Atoms) -> Atoms:
    """``relaxed`` (the relaxed initial end point) carried onto the final one: positions in
    ``final``'s atom order, each next to its unrelaxed position; no calculator."""
    frac = relaxed.get_scaled_positions(wrap=False) @ op.rotation.T + op.translation
    frac = frac[op.order]
    reference = final.get_scaled_positions(wrap=False)
    out = final.copy()
    out.calc = None
    out.set_scaled_positions(reference + _wrap(frac - reference))
    return out


def map_endpoint(relaxed: Atoms, op: EndpointMap, final: Atoms) -> Atoms:
    """:func:`map_positions`, frozen with ``relaxed``'s energy and its forces rotated."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = map_positions(relaxed, op, final)
    forces = relaxed.get_forces()[op.order] @ op.cartesian_rotation(final.cell[:]).T
    out.calc = SinglePointCalculator(out, energy=relaxed.get_potential_energy(), forces=forces)
    return out


def symmetrize_image(image: Atoms, op: EndpointMap) -> Atoms:
    """``image`` averaged with its image under a hop-reversing ``op`` (``endpoint_map(...,
    swap=True)``): the nearest configuration on the hop's dividing surface, the moving atom
    equidistant from its two sites. Same cell and atom order; no calculator."""
    frac = image.get_scaled_positions(wrap=False)
    mapped = (frac @ op.rotation.T + op.translation)[op.order]
    out = image.copy()
    out.calc = None
    out.set_scaled_positions(frac + 0.5 * _wrap(mapped - frac))
    return out
