"""The end points' relaxation threshold (``endpoint_fmax``) of both NEB procedures."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT
from test_neb import StiffEMT, vacancy_hop

from perovflow.workflows.neb import accelerated_neb, plain_neb


def _rattled_hop():
    """The Cu vacancy hop with both end points displaced off their minima (0.05 Å)."""
    initial, final = vacancy_hop()
    initial.rattle(0.05, seed=3)
    final.rattle(0.05, seed=4)
    return initial, final


def _fresh_max_force(atoms) -> float:
    probe = atoms.copy()
    probe.calc = EMT()
    return float(np.linalg.norm(probe.get_forces(), axis=1).max())


@pytest.mark.parametrize("procedure", ["plain", "accelerated"])
def test_end_points_relax_to_their_own_threshold_not_the_bands(procedure):
    initial, final = _rattled_hop()
    fmax, tight = 0.1, 0.005
    common = {"nimages": 3, "fmax": fmax, "endpoint_fmax": tight}
    if procedure == "plain":
        result = plain_neb(initial, final, lambda _: EMT(), interpolation="idpp", **common)
    else:
        result = accelerated_neb(initial, final, lambda _: EMT(), StiffEMT(), **common)
    ends = (result.images[0], result.images[-1])
    # checked with a fresh EMT, not the procedure's stored forces
    assert max(_fresh_max_force(end) for end in ends) < tight
    assert result.meta["endpoint_fmax"] == tight
    assert result.endpoints_converged == [True, True]
    assert result.converged and result.max_force_eV_A < fmax


def test_end_point_threshold_defaults_to_the_bands():
    initial, final = _rattled_hop()
    result = plain_neb(initial, final, lambda _: EMT(), nimages=3, fmax=0.1)
    assert result.meta["endpoint_fmax"] == 0.1
    worst = max(_fresh_max_force(end) for end in (result.images[0], result.images[-1]))
    assert 0.005 < worst < 0.1  # BFGS stops once below the band's threshold, not far below
