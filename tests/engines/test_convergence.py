"""Convergence series: the comparison against the reference point, and a tiny real pw.x run."""

from __future__ import annotations

import json

import pytest

from perovflow.engines.convergence import cheapest, compare


def _row(value, e, f, p, gap):
    return {"parameter": "ecutwfc", "value": value, "energy_per_atom_eV": e,
            "forces": [[f, 0.0, 0.0], [-f, 0.0, 0.0]], "pressure_kbar": p, "gap_eV": gap,
            "walltime_s": 1.0}  # fmt: skip


def test_differences_are_against_the_last_point_and_the_cheapest_passing_value_wins():
    rows = [_row(20, -10.010, 0.030, 5.0, 1.50), _row(30, -10.0205, 0.0221, 0.7, 1.41),
            _row(40, -10.0212, 0.0203, 0.3, 1.405), _row(60, -10.0214, 0.0200, 0.0, 1.40)]  # fmt: skip
    table = compare(rows)
    # by hand: (-10.010 + 10.0214) eV = 11.4 meV/atom; (0.030 - 0.020) eV/Å = 10 meV/Å
    assert table[0]["dE_meV_atom"] == pytest.approx(11.4)
    assert table[0]["dF_meV_A"] == pytest.approx(10.0)
    assert table[1]["dP_kbar"] == pytest.approx(0.7) and table[-1]["dE_meV_atom"] == 0.0
    standard = {"dE_meV_atom": 1.0, "dF_meV_A": 5.0, "dP_kbar": 0.5}
    assert cheapest(table, standard) == 40  # 30 Ry fails on the pressure (0.7 > 0.5 kbar)
    assert cheapest(table, {"dgap_eV": 0.1}) == 20  # 0.10 eV gap error is within 0.1
    assert cheapest(table, {"dE_meV_atom": 0.01}) is None


@pytest.mark.qe
@pytest.mark.cp2k
def test_converge_cli_on_csbr_energy_falls_with_the_cutoff(cli, tmp_path):
    """Plane waves are variational: a larger cutoff can only lower the total energy."""
    code, out, err = cli(
        "converge", "CsBr", "--ecutwfc", "15,20,25", "--dir", tmp_path / "c", "--json",
        "--plot", tmp_path / "conv.png",
    )  # fmt: skip
    assert code == 0, err
    table = json.loads(out)["ecutwfc"]["table"]
    assert [r["value"] for r in table] == [15, 20, 25]
    assert table[0]["dE_meV_atom"] > table[1]["dE_meV_atom"] > 0 == table[2]["dE_meV_atom"]
    assert (tmp_path / "conv_ecutwfc.png").stat().st_size > 1000
