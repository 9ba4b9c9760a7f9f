"""Resuming a stopped accelerated NEB: from its checkpoint, and by replaying stored calls."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.calculators.emt import EMT
from test_neb import StiffEMT, vacancy_hop

from perovflow.workflows.neb import accelerated_neb
from perovflow.workflows.neb_calcs import CachedCalculator, CallCounter, CountingCalculator
from perovflow.workflows.neb_checkpoint import NEBCheckpoint


class KilledError(Exception):
    """The stand-in for a lost allocation."""


class DiesAfter(EMT):
    """EMT that 'loses the allocation' at its ``limit``-th call (shared count)."""

    def __init__(self, counter: CallCounter, limit: int) -> None:
        super().__init__()
        self.counter, self.limit = counter, limit

    def calculate(self, *args, **kwargs):
        self.counter.calls += 1
        if self.counter.calls >= self.limit:
            raise KilledError
        super().calculate(*args, **kwargs)


def test_a_killed_run_resumes_from_its_checkpoint_to_the_uninterrupted_answer(tmp_path):
    initial, final = vacancy_hop()
    options = {"nimages": 5, "fmax": 0.01}
    whole = accelerated_neb(initial, final, lambda i: EMT(), StiffEMT(), **options)
    assert len(whole.history) == 3
    chk = tmp_path / "neb.json"
    died = CallCounter()
    limit = whole.endpoint_calls + whole.history[0]["calls"] + 3  # in the band's second round
    with pytest.raises(KilledError):
        accelerated_neb(initial, final, lambda i: DiesAfter(died, limit), StiffEMT(),
                        checkpoint=chk, **options)  # fmt: skip
    saved = NEBCheckpoint.load(chk)
    assert saved.refine is not None and saved.refine.outer == 0  # the last whole round
    fresh = CallCounter()
    resumed = accelerated_neb(initial, final, lambda i: CountingCalculator(EMT(), fresh),
                              StiffEMT(), checkpoint=chk, **options)  # fmt: skip
    # the resumed run made only the calls after the checkpoint, none for the end points ...
    assert fresh.calls == whole.expensive_calls - saved.endpoint_calls - saved.band_calls
    # ... and lands where the uninterrupted one did, with the same total count
    assert resumed.converged and whole.converged
    assert resumed.barrier_forward_eV == pytest.approx(whole.barrier_forward_eV, abs=1e-8)
    assert resumed.expensive_calls == whole.expensive_calls
    assert resumed.endpoint_calls == whole.endpoint_calls
    assert [h["max_force"] for h in resumed.history] == pytest.approx(
        [h["max_force"] for h in whole.history]
    )
    # independent: the resumed band's barrier from EMT computed afresh on its images
    energies = []
    for image in resumed.images:
        probe = image.copy()
        probe.calc = EMT()
        energies.append(probe.get_potential_energy())
    assert max(energies) - energies[0] == pytest.approx(resumed.barrier_forward_eV, abs=1e-8)


def test_an_unreadable_checkpoint_is_a_one_line_error(tmp_path):
    path = tmp_path / "neb.json"
    path.write_text(json.dumps({"version": 1, "ends": []}))
    with pytest.raises(ValueError, match=r"unreadable NEB checkpoint .*fix: move it away"):
        NEBCheckpoint.load(path)


def test_cached_calculator_replays_a_geometry_within_tolerance_only(tmp_path):
    atoms, _ = vacancy_hop()
    atoms.rattle(0.05, seed=4)
    counter = CallCounter()
    first = atoms.copy()
    first.calc = CachedCalculator(CountingCalculator(EMT(), counter), tmp_path / "c.jsonl")
    first.get_forces()
    again = CachedCalculator(CountingCalculator(EMT(), counter), tmp_path / "c.jsonl", tol=1e-4)
    near, far = atoms.copy(), atoms.copy()
    near.positions[3] += [5e-5, 0, 0]  # another CPU's retrace of the same geometry
    far.positions[3] += [2e-3, 0, 0]  # a different geometry
    near.calc = again
    near_forces = near.get_forces()
    assert counter.calls == 1 and again.near == 1 and again.worst == pytest.approx(5e-5)
    exact = near.copy()
    exact.calc = EMT()  # the error of replaying a 5e-5 Å neighbour, measured
    assert np.abs(near_forces - exact.get_forces()).max() < 1e-3
    far.calc = again
    far.get_forces()
    assert counter.calls == 2 and again.near == 1


def test_a_checkpoint_of_another_hop_is_refused():
    initial, _ = vacancy_hop()
    point = (np.zeros((3, 3)), 0.0, np.zeros((3, 3)))
    chk = NEBCheckpoint([point, point], [True, True], [0.0, 0.0], False, 2)
    with pytest.raises(ValueError, match=r"holds 3 atoms, this hop 31 \(fix:"):
        chk.end_atoms(initial)
