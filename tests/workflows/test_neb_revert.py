"""Trust-region step rejection in the Δ-model refinement (``refine_band(revert=True)``)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT
from test_neb import StiffEMT, ase_neb_max_force, vacancy_hop

from perovflow.workflows.neb import interpolate_band, plain_neb
from perovflow.workflows.neb_calcs import freeze
from perovflow.workflows.neb_checkpoint import NEBCheckpoint
from perovflow.workflows.neb_gp import BandData, RefineState, neb_residuals, refine_band


def _frozen_band(nimages: int = 3):
    """IDPP band of the Cu vacancy hop, ends frozen with their EMT energy and forces."""
    initial, final = vacancy_hop()
    band = interpolate_band(initial, final, nimages, "idpp")
    for k in (0, -1):
        probe = band[k].copy()
        probe.calc = EMT()
        band[k] = freeze(band[k], probe.get_potential_energy(), probe.get_forces())
    return band


def _emt(atoms) -> tuple[np.ndarray, float, np.ndarray]:
    probe = atoms.copy()
    probe.calc = EMT()
    return probe.get_positions(), float(probe.get_potential_energy()), probe.get_forces()


def _state_after_a_bad_round(band, spoil: float) -> tuple[RefineState, BandData]:
    """A refinement that reached a good band, then took a step that spoiled it by ``spoil`` Å
    (every moving atom displaced): the state a checkpoint would hold after the bad round."""
    rounds: list[RefineState] = []
    refine_band(band, [EMT() for _ in band[1:-1]], StiffEMT(), fmax=0.2, on_round=rounds.append)
    good = rounds[-1]
    rng = np.random.default_rng(7)
    spoiled = [p + rng.uniform(-spoil, spoil, p.shape) for p in good.positions]
    known = {}
    for i, positions in enumerate(spoiled, 1):
        probe = band[i].copy()
        probe.set_positions(positions)
        known[i] = _emt(probe)
    bad = [band[0], *(band[i].copy() for i in known), band[-1]]
    for i, (positions, _, _) in known.items():
        bad[i].set_positions(positions)
    history = [*good.history, {"outer": good.outer + 1,
                               "max_force": float(neb_residuals(bad, known).max())}]  # fmt: skip
    lowest = BandData(good.positions, good.known)
    observations = [*good.observations, *known.values()]
    state = RefineState(good.outer + 1, 0.3, float(neb_residuals(band, good.known).max()),
                        spoiled, known, observations, history, lowest)  # fmt: skip
    return state, lowest


@pytest.mark.parametrize("revert", [True, False])
def test_a_round_that_raises_the_residual_is_rejected_only_with_revert(revert):
    band = _frozen_band()
    state, lowest = _state_after_a_bad_round(band, spoil=0.4)
    rounds: list[RefineState] = []
    refine_band(band, [EMT() for _ in band[1:-1]], StiffEMT(), fmax=0.01, trust=0.3,
                revert=revert, state=state, outer_steps=state.outer + 1,
                on_round=rounds.append)  # fmt: skip
    after = rounds[-1]
    # the spoiled band's residual is far above the good one's (the premise of the test)
    assert state.history[-1]["max_force"] > 3 * state.best
    # the next round's images lie within the halved trust radius (0.15 Å per atom) of the
    # band they stepped from: the lowest one with revert, the spoiled one without
    origin = lowest.positions if revert else state.positions
    other = state.positions if revert else lowest.positions
    for new, start, far in zip(after.positions, origin, other, strict=True):
        assert np.linalg.norm(new - start, axis=1).max() <= 0.15 + 1e-9
        assert np.linalg.norm(new - far, axis=1).max() > 0.15
    assert after.trust == pytest.approx(0.15)


def test_revert_converges_to_the_plain_barrier():
    """From the spoiled band, the refinement with rejection still ends on the plain CI-NEB's
    saddle (the Cu hop has one), every image below fmax on a fresh EMT."""
    band = _frozen_band()
    state, _ = _state_after_a_bad_round(band, spoil=0.4)
    out = refine_band(band, [EMT() for _ in band[1:-1]], StiffEMT(), fmax=0.05, revert=True,
                      state=state, outer_steps=state.outer + 15)  # fmt: skip
    assert out.converged
    assert ase_neb_max_force(band, EMT) < 0.05
    initial, final = vacancy_hop()
    plain = plain_neb(initial, final, lambda i: EMT(), nimages=3, fmax=0.05, interpolation="idpp",
                      relax_endpoints=False)  # fmt: skip
    energies = [_emt(im)[1] for im in band]
    assert max(energies) - energies[0] == pytest.approx(plain.barrier_forward_eV, abs=0.02)


def test_the_lowest_band_survives_the_checkpoint(tmp_path):
    band = _frozen_band()
    state, lowest = _state_after_a_bad_round(band, spoil=0.4)
    point = (band[0].get_positions(), 0.0, np.zeros((len(band[0]), 3)))
    chk = NEBCheckpoint([point, point], [True, True], [0.0, 0.0], False, 2, refine=state)
    chk.save(tmp_path / "neb.json")
    back = NEBCheckpoint.load(tmp_path / "neb.json").refine.best_band
    for a, b in zip(back.positions, lowest.positions, strict=True):
        assert np.array_equal(a, b)
    assert sorted(back.known) == sorted(lowest.known)
    for i, (p, e, f) in lowest.known.items():
        assert back.known[i][1] == e and np.array_equal(back.known[i][2], f)
        assert np.array_equal(back.known[i][0], p)
