"""NEB engine: the accelerated procedure reaches the plain CI-NEB barrier with fewer expensive calls."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.mep import NEB

from perovflow.workflows.neb import accelerated_neb, plain_neb
from perovflow.workflows.neb_calcs import (
    CallCounter,
    CountingCalculator,
    ShiftedCalculator,
    relax_atoms,
)


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
    plain = plain_neb(initial, final, lambda i: expensive, nimages=5, fmax=0.05,
                      interpolation="idpp")  # fmt: skip
    fast = accelerated_neb(initial, final, lambda i: expensive, StiffEMT(), nimages=5, fmax=0.05)
    assert plain.converged and fast.converged
    assert fast.refined == [1, 2, 3, 4, 5]  # the default refines the whole band
    assert fast.endpoints_converged == [True, True] == plain.endpoints_converged
    # independent facts: the hop is symmetric (no reaction energy), the saddle is the middle image
    assert abs(plain.reaction_energy_eV) < 1e-3
    assert plain.ts_image == fast.ts_image == 3
    assert fast.barrier_forward_eV == pytest.approx(plain.barrier_forward_eV, abs=0.02)
    assert 0.3 < plain.barrier_forward_eV < 1.5  # Cu vacancy migration is ~0.7-1 eV
    assert fast.expensive_calls * 3 <= plain.expensive_calls
    # the whole accelerated band meets the plain test, recomputed here with ASE's NEB
    assert ase_neb_max_force(fast.images, EMT) < 0.05


def ase_neb_max_force(images, calc_class) -> float:
    """Largest CI-NEB force of a band, every image recomputed with a fresh calculator."""
    band = [im.copy() for im in images]
    for im in band:
        im.calc = calc_class()
    forces = NEB(band, climb=True, method="improvedtangent").get_forces()
    return float(np.linalg.norm(forces, axis=1).max())


def test_converged_is_false_when_the_step_cap_stops_the_band():
    initial, final = vacancy_hop()
    fast = accelerated_neb(initial, final, lambda i: EMT(), StiffEMT(), nimages=3, fmax=0.01,
                           outer_steps=1, cheap_steps=2)  # fmt: skip
    plain = plain_neb(initial, final, lambda i: EMT(), nimages=3, fmax=0.01, steps=2)
    for res in (fast, plain):
        assert res.converged is False
        assert ase_neb_max_force(res.images, EMT) > 0.01
        assert res.max_force_eV_A == pytest.approx(ase_neb_max_force(res.images, EMT), abs=1e-6)


def test_windowed_mode_takes_the_barrier_from_refined_images_only():
    initial, final = vacancy_hop()
    fast = accelerated_neb(initial, final, lambda i: EMT(), StiffEMT(), nimages=5, fmax=0.05,
                           window=1)  # fmt: skip
    assert fast.refined == [2, 3, 4] and fast.procedure == "accelerated (window 1)"
    # recomputed with a fresh EMT (the expensive surface): the refined images are converged
    # there (CI-NEB force of the window between its frozen neighbours 1 and 5 below fmax) ...
    window = [im.copy() for im in fast.images[1:6]]
    for im in window:
        im.calc = EMT()
    forces = NEB(window, climb=True, method="improvedtangent").get_forces()
    assert float(np.linalg.norm(forces, axis=1).max()) < 0.05
    # ... and the barrier is their highest EMT energy over the initial state's, nothing else
    start = fast.images[0].copy()
    start.calc = EMT()
    refined = [im.get_potential_energy() for im in window[1:4]]
    assert fast.barrier_forward_eV == pytest.approx(max(refined) - start.get_potential_energy())
    # converged means the whole-band test, recomputed independently
    assert fast.converged == (ase_neb_max_force(fast.images, EMT) < 0.05)


def test_barrier_ignores_an_unrefined_image_above_the_climbing_image():
    """Hand-made band: image 1 (unrefined) lies 0.5 eV up, the refined images peak at 0.3."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    from perovflow.analysis.neb import analyze_neb

    images = []
    for x, e in zip(range(5), [0.0, 0.5, 0.2, 0.3, 0.1], strict=True):
        atoms = Atoms("H", positions=[[float(x), 0, 0]])
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=[[0.0, 0, 0]])
        images.append(atoms)
    res = analyze_neb(images, refined=[2, 3])
    assert res.barrier_forward_eV == pytest.approx(0.3) and res.ts_image == 3
    assert res.barrier_backward_eV == pytest.approx(0.2)
    assert analyze_neb(images, fit=False).barrier_forward_eV == pytest.approx(0.5)


class Flat(EMT):
    """A cheap model that knows nothing: zero energy and forces everywhere."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        self.atoms = atoms.copy()
        self.results = {"energy": 0.0, "free_energy": 0.0, "forces": np.zeros((len(atoms), 3))}


def test_surrogate_relax_falls_back_to_the_expensive_surface_when_the_surrogate_fails():
    """With a useless cheap model the shifted surrogate is linear: its BFGS step is not finite
    (the 2x2x2 CsPbBr3 benchmark fed such a geometry to SevenNet). The relaxation must still
    end finite and converged, as a fresh EMT confirms."""
    from perovflow.workflows.neb_calcs import surrogate_relax

    initial, _ = vacancy_hop()
    initial.rattle(0.1, seed=3)
    counter = CallCounter()
    relaxed, *_, converged = surrogate_relax(initial, EMT(), Flat(), 0.05, counter=counter)
    assert converged and np.isfinite(relaxed.positions).all()
    check = relaxed.copy()
    check.calc = EMT()
    assert float(np.linalg.norm(check.get_forces(), axis=1).max()) < 0.05
    assert counter.calls > 1  # the expensive BFGS calls are counted


def test_cached_calculator_replays_without_calling_again(tmp_path):
    from perovflow.workflows.neb_calcs import CachedCalculator

    initial, _ = vacancy_hop()
    initial.rattle(0.05, seed=3)
    first, second = CallCounter(), CallCounter()
    a = relax_atoms(initial, CachedCalculator(CountingCalculator(EMT(), first), tmp_path / "c"),
                    0.05, 50)  # fmt: skip
    b = relax_atoms(initial, CachedCalculator(CountingCalculator(EMT(), second), tmp_path / "c"),
                    0.05, 50)  # fmt: skip
    assert first.calls > 3 and second.calls == 0
    assert np.allclose(a[0].get_positions(), b[0].get_positions())
    assert b[1] == pytest.approx(a[1])


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


def nacl_chloride_hop():
    """Cl hop into a neighbouring Cl vacancy in the 8-atom rock-salt NaCl cell (7 atoms)."""
    from ase.build import bulk

    cell = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    cl = [i for i, s in enumerate(cell.get_chemical_symbols()) if s == "Cl"]
    vacancy = cl[0]
    mover = cl[int(np.argsort(cell.get_distances(vacancy, cl, mic=True))[1])]
    initial, final = cell.copy(), cell.copy()
    final.positions[mover] += cell.get_distance(mover, vacancy, mic=True, vector=True)
    del initial[vacancy]
    del final[vacancy]
    return initial, final


@pytest.mark.mlip
@pytest.mark.slow
def test_ml_stand_in_symmetric_hop_same_barrier_as_plain():
    """SevenNet-0 expensive, CHGNet cheap (the benchmark's stand-in) on a mirror-symmetric hop."""
    from perovflow.workflows.calculators import mlip_calculator

    initial, final = nacl_chloride_hop()
    expensive, cheap = mlip_calculator("sevenn"), mlip_calculator("chgnet")
    plain = plain_neb(initial, final, lambda i: expensive, nimages=3, fmax=0.1,
                      interpolation="idpp")  # fmt: skip
    fast = accelerated_neb(initial, final, lambda i: expensive, cheap, nimages=3, fmax=0.1)
    assert plain.converged and fast.converged and fast.refined == [1, 2, 3]
    # independent facts: the hop is its own mirror image (no reaction energy, saddle in the
    # middle); Cl-vacancy migration in NaCl is ~0.7-1.1 eV (ionic conductivity, DFT)
    for res in (plain, fast):
        assert abs(res.reaction_energy_eV) < 0.01 and res.ts_image == 2
        assert 0.6 < res.barrier_forward_eV < 1.2
    assert fast.barrier_forward_eV == pytest.approx(plain.barrier_forward_eV, abs=0.02)
    assert fast.expensive_calls * 3 <= plain.expensive_calls


def test_perturbed_start_band_and_late_climbing_reach_the_same_saddle():
    """The symmetry-breaking perturbation is the same band every time, with the requested
    RMS displacement; a plain band started from it, climbing late, reaches the barrier of the
    unperturbed band climbing from the first step (EMT's Cu vacancy hop has one saddle)."""
    from perovflow.workflows.neb import interpolate_band

    initial, final = vacancy_hop()
    bare = interpolate_band(initial, final, 3, "idpp")
    one, two = (interpolate_band(initial, final, 3, "idpp", perturb=0.02) for _ in range(2))
    shift = np.array([im.positions for im in one]) - np.array([im.positions for im in bare])
    assert np.sqrt(np.mean(shift[1:-1] ** 2)) == pytest.approx(0.02, rel=0.15)  # 279 samples
    assert all(np.allclose(a.positions, b.positions) for a, b in zip(one, two, strict=True))
    assert np.allclose(one[0].positions, initial.positions)  # end points untouched
    first = plain_neb(initial, final, lambda i: EMT(), nimages=3, interpolation="idpp")
    late = plain_neb(initial, final, lambda i: EMT(), nimages=3, interpolation="idpp",
                     late_climb_fmax=0.3, perturb=0.02)  # fmt: skip
    assert first.converged and late.converged
    assert late.barrier_forward_eV == pytest.approx(first.barrier_forward_eV, abs=0.01)


def test_symmetric_ends_relax_one_end_point_and_keep_the_barrier():
    """With ``symmetric_ends`` the final end point is the image of the relaxed initial one: its
    expensive calls are saved and the band (plain or accelerated) reaches the barrier of the
    band whose two ends were both relaxed; EMT at the mapped end agrees with the frozen values."""
    initial, final = vacancy_hop()
    both = plain_neb(initial, final, lambda i: EMT(), nimages=3, interpolation="idpp")
    one = plain_neb(initial, final, lambda i: EMT(), nimages=3, interpolation="idpp",
                    symmetric_ends=True)  # fmt: skip
    fast = accelerated_neb(initial, final, lambda i: EMT(), StiffEMT(), nimages=3,
                           symmetric_ends=True)  # fmt: skip
    assert both.meta["final_end_mapped"] is False
    assert one.meta["final_end_mapped"] is True and fast.meta["final_end_mapped"] is True
    assert one.endpoint_calls * 2 <= both.endpoint_calls + 1
    assert one.converged and fast.converged and one.endpoints_converged == [True, True]
    for res in (one, fast):
        assert res.barrier_forward_eV == pytest.approx(both.barrier_forward_eV, abs=0.01)
        assert abs(res.reaction_energy_eV) < 1e-6  # exactly degenerate ends
        end = res.images[-1].copy()
        end.calc = EMT()
        assert end.get_potential_energy() == pytest.approx(
            res.images[-1].get_potential_energy(), abs=1e-6
        )
        assert np.allclose(end.get_forces(), res.images[-1].get_forces(), atol=1e-6)


def test_a_tight_fmax_below_the_surrogate_noise_still_converges():
    """At fmax 0.01 eV/Å the regularised GP's own error is larger than the residual: its band
    looked converged and the refinement used to stall with no further call; anchored to the
    last expensive forces it converges (checked with a fresh EMT) to the plain barrier."""
    initial, final = vacancy_hop()
    fast = accelerated_neb(initial, final, lambda i: EMT(), StiffEMT(), nimages=5, fmax=0.01,
                           outer_steps=10)  # fmt: skip
    plain = plain_neb(initial, final, lambda i: EMT(), nimages=5, fmax=0.01, interpolation="idpp")
    assert fast.converged and plain.converged
    assert ase_neb_max_force(fast.images, EMT) < 0.01
    assert fast.barrier_forward_eV == pytest.approx(plain.barrier_forward_eV, abs=0.005)
    assert fast.expensive_calls * 3 <= plain.expensive_calls
