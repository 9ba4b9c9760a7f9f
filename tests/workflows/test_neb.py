"""NEB engine: the accelerated procedure reaches the plain CI-NEB barrier with fewer expensive calls."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from perovflow.workflows.neb import accelerated_neb, plain_neb
from perovflow.workflows.neb_calcs import CallCounter, CountingCalculator, ShiftedCalculator


class StiffEMT(EMT):
    """EMT with a 20 % stronger pair repulsion: a cheap model that differs from EMT."""

    def initialize(self, atoms):
        super().initialize(atoms)
        self.par["V0"] = self.par["V0"] * 1.2
        self.par["neghalfv0overgamma2"] = self.par["neghalfv0overgamma2"] * 1.2


def vacancy_hop():
    """Nearest-neighbour vacancy hop in a 31-atom Cu cell (end points share atom order)."""
    cell = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    dist = cell.get_distances(0, range(len(cell)), mic=True)
    mover = int(np.argsort(dist)[1])
    initial, final = cell.copy(), cell.copy()
    final.positions[mover] += cell.get_distance(mover, 0, mic=True, vector=True)
    del initial[0]
    del final[0]
    return initial, final


def test_shifted_calculator_is_exact_at_reference():
    initial, _ = vacancy_hop()
    initial.rattle(0.05, seed=1)
    probe = initial.copy()
    probe.calc = EMT()
    e, f = probe.get_potential_energy(), probe.get_forces()
    shifted = initial.copy()
    shifted.calc = ShiftedCalculator(StiffEMT(), initial, e, f)
    assert shifted.get_potential_energy() == pytest.approx(e, abs=1e-9)
    assert np.allclose(shifted.get_forces(), f, atol=1e-9)


def test_counting_calculator_counts_new_geometries_only():
    initial, _ = vacancy_hop()
    counter = CallCounter()
    initial.calc = CountingCalculator(EMT(), counter)
    initial.get_potential_energy()
    initial.get_forces()
    assert counter.calls == 1
    initial.positions[0] += 0.01
    initial.get_forces()
    assert counter.calls == 2


def test_accelerated_matches_plain_barrier_with_fewer_expensive_calls():
    initial, final = vacancy_hop()
    expensive = EMT()
    plain = plain_neb(initial, final, lambda i: expensive, nimages=5, fmax=0.05)
    fast = accelerated_neb(initial, final, lambda i: expensive, StiffEMT(), nimages=5, fmax=0.05)
    assert plain.converged and fast.converged
    # independent facts: the hop is symmetric (no reaction energy), the saddle is the middle image
    assert abs(plain.energies[-1] - plain.energies[0]) < 1e-3
    assert plain.ts_index == fast.ts_index == 3
    assert fast.forward_barrier_eV == pytest.approx(plain.forward_barrier_eV, abs=0.02)
    assert 0.3 < plain.forward_barrier_eV < 1.5  # Cu vacancy migration is ~0.7-1 eV
    assert fast.expensive_calls * 3 <= plain.expensive_calls


def test_delta_model_learns_the_expensive_surface_from_its_calls():
    """Trained on EMT calls along a hop, cheap + GP predicts EMT between and just beyond them
    better than the cheap model (StiffEMT) does, and reproduces its own data."""
    from perovflow.workflows.neb_gp import DeltaModel

    initial, final = vacancy_hop()
    expensive, cheap = EMT(), StiffEMT()
    model = DeltaModel(initial, cheap, length=0.6)
    start, step = initial.get_positions(), final.get_positions() - initial.get_positions()

    def emt(t: float):
        probe = initial.copy()
        probe.set_positions(start + t * step)
        probe.calc = expensive
        return probe, probe.get_potential_energy(), probe.get_forces()

    for t in (0.0, 0.08, 0.16, 0.24):
        probe, e, f = emt(t)
        model.add(probe.get_positions(), e, f)
    probe, e, f = emt(0.08)
    e_model, f_model = model.predict(probe.get_positions())
    assert e_model == pytest.approx(e, abs=5e-3)
    assert np.abs(f_model - f).max() < 0.02
    for t in (0.12, 0.28):
        probe, e, f = emt(t)
        e_model, f_model = model.predict(probe.get_positions())
        f_cheap = cheap.get_forces(probe.copy())
        assert np.abs(f_model - f).max() < 0.5 * np.abs(f_cheap - f).max()


def test_delta_model_memory_is_bounded_and_keeps_the_frozen_ends():
    from perovflow.workflows.neb_gp import DeltaModel

    initial, _ = vacancy_hop()
    rows = 3 * len(initial) + 1
    model = DeltaModel(initial, StiffEMT(), max_rows=6 * rows)
    for seed in range(9):
        probe = initial.copy()
        probe.rattle(0.03, seed=seed)
        probe.calc = EMT()
        model.add(probe.get_positions(), probe.get_potential_energy(), probe.get_forces())
    model.fit()
    assert model.gp.X.shape == (6, rows - 1)  # kernel matrix stays 6 x (3N + 1) rows
    assert np.allclose(model.gp.X[:2], model.X[:2]) and np.allclose(model.gp.X[2:], model.X[-4:])
