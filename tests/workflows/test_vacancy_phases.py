"""Competing phases of vacancy studies: checked at build time, own k grids, honest report."""

from __future__ import annotations

from pathlib import Path

import pytest

from perovflow.errors import InputError
from perovflow.workflows.studies import build_flow, load_study, makers
from perovflow.workflows.vacancy_phases import (
    check_competing_phases,
    elemental_reference,
    formation_report,
    phase_makers,
)

STUDY = """
study: vacancy
name: csbr-phases
protocol: fast
code: qe
prerelax: null
structure: {{prototype: CsBr}}
settings:
  static: {{kpts: [1, 1, 1], koffset: [1, 1, 1], ecutwfc: 30}}
vacancy:
  elements: [Br]
  supercell: 2x2x2
  charge_states: {{Br: [0]}}
  competing_phases: {phases}
{extra}"""


def _study(tmp_path, phases: str, extra: str = ""):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY.format(phases=phases, extra=extra))
    return path


def test_missing_elements_fail_at_build_time_naming_element_and_fix(tmp_path):
    path = _study(tmp_path, "[CsBr]")
    with pytest.raises(InputError) as err:
        build_flow(path)  # nothing has run: the flow is not even built
    assert "Br, Cs" in err.value.problem
    assert "Br2" in err.value.fix and "Cs" in err.value.fix


def test_plan_reports_the_missing_element_on_one_line(tmp_path, cli):
    code, out, err = cli("plan", str(_study(tmp_path, "[CsBr, Cs]")))
    assert code == 2
    line = (out + err).strip()
    assert "\n" not in line and "Traceback" not in line
    assert "elemental reference for Br" in line and "Br2" in line


def test_foreign_elements_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"PbBr2 \(Pb\)"):
        build_flow(_study(tmp_path, "[Cs, Br2, PbBr2]"))


def test_complete_phases_build_and_reference_names():
    from perovflow.structures.prototypes import build_prototype

    host = build_prototype("Cs4PbBr6")
    check_competing_phases(host, {n: build_prototype(n) for n in ("CsBr", "Cs", "Pb", "Br2")})
    assert [elemental_reference(e) for e in ("Br", "Cl", "I", "Sn")] == ["Br2", "Cl2", "I2", "Sn"]
    assert "structure file" in elemental_reference("Xe")


def test_shipped_studies_list_every_element():
    from perovflow.workflows.studies import structure_of

    for name in ("cs4pbbr6_vbr.yaml", "cs2naagbicl6_vacancies.yaml"):
        study = load_study(Path(__file__).parents[2] / "studies" / name)
        phases = study.vacancy.competing_phases
        from perovflow.structures.io import load_structure

        check_competing_phases(structure_of(study), {p: load_structure(p) for p in phases})


def test_phases_use_their_own_k_grid_and_user_phase_settings_win(tmp_path):
    study = load_study(_study(tmp_path, "[Cs, Br2]"))
    relax, static = phase_makers(study, makers(study))
    # the supercell's explicit grid is not imposed on a 1-atom metal; the cutoff is kept
    assert "kpts" not in static.input_set_overrides and "koffset" not in static.input_set_overrides
    assert static.input_set_overrides["ecutwfc"] == 30
    extra = "  phase_settings: {static: {kpts: [6, 6, 6]}, relax: {kspacing: 0.3}}\n"
    study = load_study(_study(tmp_path, "[Cs, Br2]", extra))
    relax, static = phase_makers(study, makers(study))
    assert static.input_set_overrides["kpts"] == [6, 6, 6]
    assert relax.input_set_overrides["kspacing"] == 0.3
    flow = build_flow(study)
    names = {j.name for j in flow.jobs}
    assert {"Cs static", "Br2 static", "Cs relax", "Br2 relax"} <= names


def test_report_says_when_formation_energies_were_not_requested():
    out = formation_report({"energy_eV": -1.0}, [], {}, {"vbm_eV": 0.0, "cbm_eV": 1.0})
    assert "not requested" in out["skipped"]
    out = formation_report({"energy_eV": -1.0}, [], {"Cs": None}, {"vbm_eV": 0.0, "cbm_eV": 1.0})
    assert "Cs" in out["skipped"]
