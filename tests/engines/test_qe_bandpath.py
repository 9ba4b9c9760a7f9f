"""Real pw.x: the band path at the fast protocol's line density finds the gap of a dense grid."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from qe_run import run  # helper next to this file

from perovflow.engines.protocols import get_protocol
from perovflow.engines.qe.jobs import QEBandsMaker, QEDosMaker, QEStaticMaker

pytestmark = [pytest.mark.qe, pytest.mark.cp2k, pytest.mark.slow]  # GTH: cp2k-data; ~1-4 min
TINY = {"ecutwfc": 20, "ecutrho": 80, "conv_thr": 1e-6}


def test_path_gap_equals_dense_grid_gap(tmp_path):
    # cubic CsPbBr3 (Pm-3m, a = 5.87 Å), 5 atoms
    cell = Structure(
        Lattice.cubic(5.87),
        ["Cs", "Pb", "Br", "Br", "Br"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    scf = run(QEStaticMaker(protocol="fast", input_set_overrides={**TINY, "kpts": [4, 4, 4]}),
              cell, tmp_path, "scf")  # fmt: skip
    density = get_protocol("fast", "qe")["bands_line_density"]
    bands = run(QEBandsMaker(protocol="fast", input_set_overrides=TINY, line_density=density),
                cell, tmp_path, "bands", scf.dir_name)  # fmt: skip
    # a dense uniform grid on the same density: 8x8x8, Γ-centred, every k of the zone
    grid = run(QEDosMaker(protocol="fast", input_set_overrides={**TINY, "kpts": [8, 8, 8]}),
               cell, tmp_path, "grid", scf.dir_name)  # fmt: skip
    nk_path = len(bands.bandstructure["kpoints_frac"])
    assert nk_path >= 40  # a plottable path, not a handful of points
    assert len(grid.kpoints["fractional"]) >= 20  # the irreducible 8x8x8 grid (35 points)
    assert bands.electronic.band_gap_eV == pytest.approx(grid.electronic.band_gap_eV, abs=0.05)
    # the edges are at R = (1/2, 1/2, 1/2) (PBE, no SOC), and the path labels that point R
    labels = {int(i): n for i, n in bands.bandstructure["labels"].items()}
    eig = np.array(bands.eigenvalues)[0]  # (k, band); 34 electrons -> band 17 is the VBM
    assert labels.get(int(np.argmax(eig[:, 16]))) == "R"
    assert labels.get(int(np.argmin(eig[:, 17]))) == "R"
