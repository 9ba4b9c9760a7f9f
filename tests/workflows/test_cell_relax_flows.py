"""Study flows relax the bulk cell (then build the supercell) and the competing phases' cells."""

from __future__ import annotations

import pytest

from perovflow.structures.io import load_structure
from perovflow.workflows.common import engine_maker
from perovflow.workflows.studies import build_flow, load_study
from perovflow.workflows.vacancy_phases import phase_relaxes_cell

STUDY = """
study: vacancy
name: csbr-cells
protocol: {protocol}
code: qe
prerelax: mlip
structure: {{prototype: CsBr}}
vacancy:
  elements: [Br]
  supercell: 2x2x2
  charge_states: {{Br: [0]}}
  competing_phases: [Cs, Br2]
"""


def _relax_makers(tmp_path, protocol: str) -> dict[str, bool]:
    path = tmp_path / "study.yaml"
    path.write_text(STUDY.format(protocol=protocol))
    flow = build_flow(load_study(path))
    out = {}
    for job, _ in flow.iterflow():
        maker = getattr(job.function, "__self__", None)
        if maker is not None and job.name.endswith("relax"):
            out[job.name] = bool(getattr(maker, "relax_cell", False))
    return out


def test_bulk_and_phases_relax_their_cells_defects_and_prerelax_do_not(tmp_path):
    cells = _relax_makers(tmp_path, "fast")
    assert cells["bulk relax"] and cells["Cs relax"]
    assert not cells["bulk ml-prerelax"]  # the ML pre-relax keeps the cell
    assert not any(v for k, v in cells.items() if k.startswith("V_Br"))  # defects: fixed cell
    # Br2 is a molecular crystal and fast has no dispersion: its measured cell is kept
    assert not cells["Br2 relax"]
    # standard has D3: Br2 relaxes with its cell
    assert _relax_makers(tmp_path, "standard")["Br2 relax"]


@pytest.mark.parametrize(
    ("phase", "protocol", "overrides", "expected"),
    [
        ("CsBr", "fast", {}, True),
        ("Br2", "fast", {}, False),
        ("Br2", "seed", {}, True),
        ("Br2", "fast", {"vdw_corr": "dft-d3"}, True),  # the user's D3 wins
        ("Br2", "standard", {"system.vdw_corr": "none"}, False),
    ],
)
def test_molecular_crystals_relax_their_cell_only_with_dispersion(
    phase, protocol, overrides, expected
):
    maker = engine_maker("qe", "relax", protocol, overrides)
    assert phase_relaxes_cell(load_structure(phase), maker) is expected
