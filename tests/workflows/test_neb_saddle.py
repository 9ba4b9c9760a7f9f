"""The symmetry-constrained saddle of a symmetric hop against the CI-NEB of the same hop."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT
from test_neb import vacancy_hop

from perovflow.workflows.neb import plain_neb
from perovflow.workflows.neb_calcs import relax_atoms
from perovflow.workflows.neb_saddle import midpoint, symmetric_saddle


def _relaxed_ends():
    initial, final = vacancy_hop()
    return relax_atoms(initial, EMT(), 0.01, 200)[0], relax_atoms(final, EMT(), 0.01, 200)[0]


def test_symmetric_saddle_is_the_climbing_image_saddle_at_a_tenth_of_the_calls():
    initial, final = _relaxed_ends()
    saddle = symmetric_saddle(initial, final, EMT(), fmax=0.01)
    band = plain_neb(*vacancy_hop(), lambda i: EMT(), nimages=5, fmax=0.01, interpolation="idpp")
    assert saddle.converged and band.converged
    assert saddle.barrier_eV == pytest.approx(band.barrier_forward_eV, abs=0.005)
    assert saddle.is_saddle_along_hop and saddle.asymmetry_A < 1e-6
    assert saddle.expensive_calls * 10 <= band.expensive_calls
    # a stationary point of the full surface, not only of the symmetrised one: fresh EMT forces
    check = saddle.atoms.copy()
    check.calc = EMT()
    assert float(np.linalg.norm(check.get_forces(), axis=1).max()) < 0.01


def test_a_guess_off_the_dividing_surface_is_averaged_onto_it_and_finds_the_same_saddle():
    initial, final = _relaxed_ends()
    centre = symmetric_saddle(initial, final, EMT(), fmax=0.01)
    quarter = midpoint(initial, final)
    quarter.positions = 0.5 * (initial.positions + quarter.positions)  # a quarter of the hop
    off = symmetric_saddle(initial, final, EMT(), guess=quarter, fmax=0.01)
    assert off.asymmetry_A < 1e-6
    assert off.barrier_eV == pytest.approx(centre.barrier_eV, abs=1e-3)


def test_a_hop_no_operation_reverses_is_refused():
    initial, final = vacancy_hop()
    for ends in (initial, final):  # an Au next to the first site only: the sites differ
        ends[1].symbol = "Au"
    with pytest.raises(ValueError, match=r"no symmetry operation reverses this hop \(fix:"):
        symmetric_saddle(initial, final, EMT())
