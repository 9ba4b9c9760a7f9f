"""The vacancy study's hybrid step: plan counts, restart wiring, levels of spinor runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from perovflow.errors import InputError
from perovflow.workflows.hybrid import spinor_level
from perovflow.workflows.studies import build_flow, plan

STUDY = """
study: vacancy
name: vbr-hybrid
protocol: fast
code: qe
prerelax: null
structure: {prototype: Cs4PbBr6, cell: primitive}
vacancy: {elements: [Br], charge_states: {Br: [0, 1]}, hybrid: HYBRID}
"""


def write(tmp_path: Path, hybrid: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(STUDY.replace("HYBRID", hybrid))
    return path


def test_plan_counts_the_hybrid_step(tmp_path):
    data = plan(write(tmp_path, "{xc: hse06, soc: true}"))
    # 3 cells (bulk supercell, V_Br 0, V_Br +1): PBE static + PDOS as before, then per cell a
    # PBE+SOC static (the PBE static is scalar: its wavefunctions cannot start a spinor run)
    # and the HSE06+SOC static: 3 + 3 + 3 statics; the bulk relax is a vc-relax, the two
    # defect cells relax their atoms only
    assert data["calculations"]["qe"] == {"dos": 3, "relax": 2, "static": 9, "vc-relax": 1}
    assert data["dft_calculations"] == 15
    assert data["symmetry"]["calcs_saved"] == (24 - 2) * (3 + 2)
    rows = {r["name"]: r for r in data["graph"]}
    hse = rows["V_Br q=+0 hse06 static"]
    # on the relaxed PBE geometry, started from the cell's PBE+SOC static
    assert sorted(hse["parents"]) == ["V_Br q=+0 pbe static (soc=True)", "V_Br q=+0 relax"]
    assert "vacancy report + hybrid" in rows


def test_hybrid_makers_restart_from_the_pbe_static(tmp_path):
    flow = build_flow(write(tmp_path, "{xc: hse06, nqx: 1}"))
    jobs = {j.name: j for j, _ in flow.iterflow()}
    hse = jobs["bulk supercell hse06 static"]
    maker = hse.function.__self__
    assert (maker.xc, maker.nqx, maker.projwfc, maker.soc) == ("hse06", 1, True, None)
    # no soc in the option: it restarts straight from the cell's PBE static
    assert hse.function_kwargs["prev_dir"].uuid == jobs["bulk supercell static"].uuid
    assert "bulk supercell pbe static (soc=True)" not in jobs


def test_bad_hybrid_option_is_one_line_error(tmp_path):
    with pytest.raises(InputError) as err:
        build_flow(write(tmp_path, "{xc: hse06, nkx: 2}"))
    assert "nkx" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="not a hybrid"):
        build_flow(write(tmp_path, "{xc: pbe}"))


def _state(e: float, occ: float, ipr: float = 0.05, on: str = "Br3") -> dict:
    """A state localised by ``ipr`` with its largest weight on atom ``on`` (e.g. Pb0)."""
    return {"energy_eV": e, "occupation": occ, "ipr": ipr,
            "top_atoms": [{"element": on[:2], "index": int(on[2:]), "fraction": 0.7}]}  # fmt: skip


def test_spinor_level_half_filled_kramers_pair():
    # non-magnetic SOC run of an odd cell: host VB (filled) up to 0.0 eV, the unpaired
    # electron shared by a Kramers pair at 2.4 eV (0.5 + 0.5), host CB from 3.9 eV
    states = [_state(-0.3, 1.0), _state(0.0, 1.0), _state(0.0, 1.0),
              _state(2.4, 0.5, 0.6, "Pb0"), _state(2.4, 0.5, 0.6, "Pb0"), _state(3.9, 0.0),
              _state(3.9, 0.0)]  # fmt: skip
    level = spinor_level(states)
    assert level["midgap_level"] is True and level["level_above_vbm_eV"] == 2.4
    assert level["host_gap_eV"] == 3.9 and level["level_ipr"] == 0.6
    assert level["partner_above_level_eV"] is None  # the partner is degenerate, half filled
    # the pair split by exact exchange (or a polarised level): the occupied level on Pb0 at
    # 2.0 eV, its empty partner on Pb0 at 2.6 eV, the host CBM (Cs 6s, delocalised) at 3.5 eV
    split = [_state(0.0, 1.0), _state(2.0, 1.0, 0.5, "Pb0"), _state(2.6, 0.0, 0.5, "Pb0"),
             _state(3.5, 0.0, 0.05, "Cs1")]  # fmt: skip
    level = spinor_level(split)
    assert level["level_above_vbm_eV"] == 2.0 and level["level_below_cbm_eV"] == 1.5
    assert level["host_gap_eV"] == 3.5 and level["partner_above_level_eV"] == 0.6
    # an empty state just above on another atom is the host CBM, not a partner
    other = [*split[:2], _state(2.6, 0.0, 0.5, "Pb1"), split[3]]
    assert spinor_level(other)["level_below_cbm_eV"] == 0.6
    # a perfect host: VBM and CBM both spread (7 % on Pb0 at most) - no partner, the CBM stays
    host = [_state(0.0, 1.0), {**_state(1.0, 1.0), "top_atoms": [{"element": "Pb", "index": 0,
            "fraction": 0.07}]}, {**_state(4.8, 0.0), "top_atoms": [{"element": "Pb",
            "index": 0, "fraction": 0.07}]}]  # fmt: skip
    assert spinor_level(host)["level_below_cbm_eV"] == 3.8
