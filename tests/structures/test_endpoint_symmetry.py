"""End-point symmetry: the final end point of a vacancy hop as the image of the initial one.

Checked against independent evaluations: EMT energies and forces computed afresh at the
mapped geometry, and a direct relaxation of the final end point.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.optimize import BFGS

from perovflow.structures.endpoint_symmetry import endpoint_map, map_endpoint


def cu_vacancy_hop():
    """Nearest-neighbour vacancy hop in a 31-atom Cu cell (end points share atom order)."""
    cell = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    mover = int(np.argsort(cell.get_distances(0, range(len(cell)), mic=True))[1])
    initial, final = cell.copy(), cell.copy()
    final.positions[mover] += cell.get_distance(mover, 0, mic=True, vector=True)
    del initial[0]
    del final[0]
    return initial, final


def _energy_forces(atoms):
    probe = atoms.copy()
    probe.calc = EMT()
    return probe.get_potential_energy(), probe.get_forces()


def test_mapped_geometry_has_the_energy_and_rotated_forces_emt_computes_there():
    initial, final = cu_vacancy_hop()
    op = endpoint_map(initial, final)
    assert op is not None
    distorted = initial.copy()
    distorted.rattle(0.05, seed=3)  # forces of every size and direction
    distorted.calc = EMT()
    moved = map_endpoint(distorted, op, final)
    e1, f1 = _energy_forces(moved)  # EMT afresh at the mapped geometry
    assert moved.get_potential_energy() == pytest.approx(e1, abs=1e-8)
    assert np.allclose(moved.get_forces(), f1, atol=1e-8)
    # next to the final end point, atom by atom (a continuous band)
    assert np.abs(moved.positions - final.positions).max() < 0.3


def test_mapped_relaxed_initial_is_the_directly_relaxed_final():
    initial, final = cu_vacancy_hop()
    relaxed = {}
    for name, atoms in (("initial", initial), ("final", final)):
        work = atoms.copy()
        work.calc = EMT()
        BFGS(work, logfile=None).run(fmax=1e-4, steps=500)
        relaxed[name] = work
    moved = map_endpoint(relaxed["initial"], endpoint_map(initial, final), final)
    assert np.abs(moved.positions - relaxed["final"].positions).max() < 1e-3
    assert _energy_forces(moved)[0] == pytest.approx(
        relaxed["final"].get_potential_energy(), abs=1e-6
    )


def test_inequivalent_end_points_have_no_map():
    initial, final = cu_vacancy_hop()
    assert endpoint_map(initial, final) is not None
    # an Au nearer the initial vacancy than the final one: the two sites are inequivalent
    mover = int(np.argmax(np.linalg.norm(final.positions - initial.positions, axis=1)))
    vacancy, site = final.positions[mover], initial.positions[mover]
    gap = [np.linalg.norm(initial.positions[k] - site) - np.linalg.norm(initial.positions[k] - vacancy)
           for k in range(len(initial))]  # fmt: skip
    for atoms in (initial, final):
        atoms[int(np.argmax(gap))].symbol = "Au"
    assert endpoint_map(initial, final) is None


def test_cs2nabicl6_cl_hop_is_symmetric():
    from perovflow.structures.paths import enumerate_hops, hop_endpoints
    from perovflow.structures.prototypes import build_prototype

    host = build_prototype("Cs2NaBiCl6", cell="conventional")
    hop = min(enumerate_hops(host, "Cl"), key=lambda h: h.length)
    initial, final = (s.to_ase_atoms() for s in hop_endpoints(host, hop))
    op = endpoint_map(initial, final)
    assert op is not None
    assert sorted(op.order.tolist()) == list(range(len(initial)))


def _ase_hop(prototype: str, element: str, cell: str):
    from perovflow.structures.paths import enumerate_hops, hop_endpoints
    from perovflow.structures.prototypes import build_prototype

    host = build_prototype(prototype, cell=cell)
    hop = min(enumerate_hops(host, element), key=lambda h: h.length)
    return tuple(s.to_ase_atoms() for s in hop_endpoints(host, hop))


@pytest.mark.parametrize(
    "ends",
    [cu_vacancy_hop, lambda: _ase_hop("Cs2NaBiCl6", "Cl", "conventional"),
     lambda: _ase_hop("CsPbBr3-cubic", "Br", "primitive")],
    ids=["Cu", "Cs2NaBiCl6-Cl", "CsPbBr3-5-atom"],
)  # fmt: skip
def test_a_hop_reversing_operation_fixes_the_midpoint_and_symmetrizes_an_image(ends):
    from perovflow.structures.endpoint_symmetry import symmetrize_image

    initial, final = ends()
    op = endpoint_map(initial, final, swap=True)
    assert op is not None
    # an involution (in the 5-atom cell a 4-fold rotation also carries the end points onto
    # each other, but swaps the two sites only through another periodic image: refused)
    assert np.allclose(op.rotation @ op.rotation, np.eye(3))
    mover = int(np.argmax(np.linalg.norm(final.positions - initial.positions, axis=1)))
    image = initial.copy()
    image.positions[mover] = 0.5 * (initial.positions[mover] + final.positions[mover])
    image.rattle(0.05, seed=7)
    sym = symmetrize_image(image, op)
    # on the dividing surface: the moving atom equidistant from its two sites, and the
    # configuration its own image (symmetrizing again moves nothing)
    here = sym.positions[mover]
    to_a = np.linalg.norm(here - initial.positions[mover])
    to_b = np.linalg.norm(here - final.positions[mover])
    assert to_a == pytest.approx(to_b, abs=1e-9)
    assert np.allclose(symmetrize_image(sym, op).positions, sym.positions, atol=1e-9)
    assert np.abs(sym.positions - image.positions).max() < 0.1  # the nearest such point
