"""The numeric kernels of IPR and PDOS against direct formulas and closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from perovflow.analysis.ipr import ipr_values
from perovflow.analysis.pdos import gaussian_dos


def test_ipr_of_signed_weights_uses_their_magnitudes_in_chunks():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(50, 7)).astype(np.float32)  # Mulliken-like, some negative
    naive = [np.sum(r.astype(float) ** 2) / np.sum(np.abs(r.astype(float))) ** 2 for r in w]
    assert ipr_values(w, chunk_elements=20) == pytest.approx(naive, rel=1e-5)
    assert np.isnan(ipr_values(np.zeros((2, 3)))).all()  # no weight: undefined


def _direct(e, w, grid, sigma):
    g = np.exp(-0.5 * ((grid[None, :] - e[:, None]) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    return w.T @ g


@pytest.mark.parametrize(("sigma", "step"), [(0.1, 0.01), (0.05, 0.013), (0.02, 0.02)])
def test_gaussian_dos_equals_the_direct_sum(sigma: float, step: float):
    rng = np.random.default_rng(4)
    e = rng.uniform(-3.5, 3.5, 300)
    w = rng.random((300, 3))
    grid = np.arange(-3.0, 3.0, step)
    ref = _direct(e, w, grid, sigma)
    # the kernel cuts each Gaussian at 6 sigma: exp(-18) ~ 1.5e-8 of its peak
    assert np.abs(gaussian_dos(e, w, grid, sigma) - ref).max() < 1e-7 * ref.max()


def test_one_state_integrates_to_its_weight_and_peaks_at_one_over_sigma_root_two_pi():
    grid = np.arange(-2.0, 2.0, 0.005)
    dos = gaussian_dos(np.array([0.1234]), np.array([[2.0]]), grid, 0.1)[0]
    assert dos.sum() * 0.005 == pytest.approx(2.0, rel=1e-6)
    peak = 2.0 / (0.1 * np.sqrt(2 * np.pi)) * np.exp(-0.5 * (0.0016 / 0.1) ** 2)  # 0.125 - 0.1234
    assert dos.max() == pytest.approx(peak, rel=1e-9)
    assert grid[dos.argmax()] == pytest.approx(0.125)


def test_non_uniform_grid_takes_the_dense_product():
    e, w = np.array([0.0, 0.5]), np.array([[1.0], [0.5]])
    grid = np.array([-0.2, -0.05, 0.0, 0.1, 0.45, 0.5, 0.7])
    assert gaussian_dos(e, w, grid, 0.1) == pytest.approx(_direct(e, w, grid, 0.1), rel=1e-6)
