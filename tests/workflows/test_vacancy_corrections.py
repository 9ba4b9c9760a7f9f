"""Vacancy flow and charged-defect corrections: what is computed, what ε is used, and why
a charged cell stays uncorrected. The numbers come from stored real pw.x + pp.x runs of a
V_H⁺ vacancy in LiH (tests/data/analysis/qe/lih_vh), checked against Makov–Payne."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from perovflow.analysis.ewald import COULOMB_EV_A
from perovflow.errors import InputError
from perovflow.workflows.studies import build_flow, load_study
from perovflow.workflows.vacancy_phases import dielectric_of, formation_report

DATA = Path(__file__).parents[1] / "data" / "analysis" / "qe" / "lih_vh"
STUDY = """
study: vacancy
name: csbr-corr
protocol: fast
code: qe
prerelax: null
structure: {{prototype: CsBr}}
settings:
  static: {{kpts: [1, 1, 1], ecutwfc: 20}}
vacancy:
  elements: [Br]
  supercell: 2x2x2
  charge_states: {{Br: {charges}}}
{extra}"""


def _flow(tmp_path, charges="[0, 1]", extra=""):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY.format(charges=charges, extra=extra))
    return build_flow(load_study(path))


def _statics(flow) -> dict[str, bool]:
    """Static job name -> whether its maker writes the electrostatic potential."""
    return {
        j.name: j.function.__self__.write_potential for j in flow.jobs if j.name.endswith("static")
    }


def _report(flow):
    return next(j for j in flow.jobs if j.name == "vacancy report")


def test_bulk_and_charged_cells_write_the_potential_neutral_ones_do_not(tmp_path):
    flow = _flow(tmp_path, extra="  dielectric: {tensor: 6.5, source: 'CsBr, Lowndes 1966'}\n")
    statics = _statics(flow)
    assert statics["bulk supercell static"] and statics["V_Br q=+1 static"] is True
    assert statics["V_Br q=+0 static"] is False
    args = _report(flow).function_args
    assert args[5] == {"tensor": 6.5, "source": "CsBr, Lowndes 1966"} and args[6] == "auto"
    # neutral only, or the user switching corrections off: no pp.x run anywhere
    assert not any(_statics(_flow(tmp_path, charges="[0]")).values())
    assert not any(_statics(_flow(tmp_path, extra="  correction: none\n")).values())


def test_study_dielectric_must_be_scalar_or_3x3(tmp_path):
    with pytest.raises(InputError, match="3x3"):
        _flow(tmp_path, extra="  dielectric: {tensor: [[1, 0], [0, 1]], source: x}\n")


def test_dielectric_from_an_upstream_maker_output_keeps_the_tensor_whole():
    eps0 = [[6.0, 0.1, 0.0], [0.1, 6.0, 0.0], [0.0, 0.0, 9.0]]
    out = dielectric_of({"epsilon_static": eps0, "epsilon_electronic": np.eye(3).tolist(),
                         "dir_name": "/runs/eps"})  # fmt: skip
    assert out["tensor"] == eps0 and "/runs/eps" in out["source"]
    assert dielectric_of(4.0) == {"tensor": 4.0, "source": "given"}


def _rows_and_phases():
    docs = {}
    for name in ("bulk", "vh"):
        with gzip.open(DATA / f"n2_{name}.json.gz", "rt") as fh:
            docs[name] = json.load(fh)
    e_fu = docs["bulk"]["energy_eV"] / 8  # 8 LiH in the cell
    li = Structure(Lattice.cubic(3.44), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    h2 = Structure(Lattice.cubic(6.0), ["H", "H"], [[0, 0, 0], [0, 0, 0.125]])
    mu_li, mu_h = -200.0, e_fu + 200.0 + 0.9  # ΔH_f(LiH) = -0.9 eV (measured)
    phases = {"Li": {"structure": li.as_dict(), "energy_eV": 2 * mu_li},
              "H2": {"structure": h2.as_dict(), "energy_eV": 2 * mu_h},
              "LiH": {"structure": docs["bulk"]["structure"], "energy_eV": docs["bulk"]["energy_eV"]}}  # fmt: skip
    rows = [{"label": "V_H", "charge": 1, "doc": docs["vh"]}]
    return docs["bulk"], rows, phases


def test_report_corrects_charged_cells_and_keeps_the_uncorrected_beside():
    bulk, rows, phases = _rows_and_phases()
    edges = {"vbm_eV": 0.0, "cbm_eV": 2.4}
    eps = {"tensor": 3.61, "source": "ε∞ of LiH, measured"}
    out = formation_report(bulk, rows, phases, edges, eps, "auto")["V_H"]
    entry = out["entries"][0]
    a_conv = Structure.from_dict(bulk["structure"]).lattice.abc[0] * np.sqrt(2)
    makov_payne = COULOMB_EV_A * 4.5848 / (2 * 3.61 * a_conv)
    assert entry["correction_scheme"] == "freysoldt" and out["dielectric"] == eps
    assert 0 < entry["correction_eV"] == pytest.approx(makov_payne, rel=0.3)
    for lim, plain in zip(out["limits"], out["uncorrected"]["limits"], strict=True):
        corrected, bare = lim["formation_at_vbm_eV"][1], plain["formation_at_vbm_eV"][1]
        assert corrected - bare == pytest.approx(entry["correction_eV"], abs=1e-6)
    assert out["uncorrected_charges"] == []


def test_charged_cell_without_dielectric_is_reported_uncorrected_and_says_so():
    bulk, rows, phases = _rows_and_phases()
    out = formation_report(bulk, rows, phases, {"vbm_eV": 0.0, "cbm_eV": 2.4}, None)["V_H"]
    assert out["uncorrected_charges"] == [1] and "dielectric" in out["uncorrected_reason"]
    assert out["entries"][0]["correction_eV"] == 0.0
    rows[0]["doc"] = {**rows[0]["doc"], "potential": None}
    eps = {"tensor": 3.61, "source": "x"}
    out = formation_report(bulk, rows, phases, {"vbm_eV": 0.0, "cbm_eV": 2.4}, eps)["V_H"]
    assert "potentials" in out["uncorrected_reason"]


def test_report_shows_terms_dielectric_alignment_plots_and_both_values(tmp_path):
    from perovflow.analysis.formation_report import formation_sections
    from perovflow.analysis.report import write_report

    bulk, rows, phases = _rows_and_phases()
    eps = {"tensor": [[3.61, 0, 0], [0, 3.61, 0], [0, 0, 3.61]], "source": "ε∞ of LiH, measured"}
    res = formation_report(bulk, rows, phases, {"vbm_eV": 0.0, "cbm_eV": 2.4}, eps, "efnv")
    res = res["V_H"]
    sections = formation_sections(res, tmp_path / "figs", "V_H", eps["source"])
    assert [s["kind"] for s in sections] == ["formation", "corrections"]
    (corr,) = sections[1]["rows"]
    assert corr["scheme"] == "efnv" and corr["model_eV"] == pytest.approx(
        COULOMB_EV_A * 4.5848 / (2 * 3.61 * 4.02 * 2), rel=1e-3
    )
    assert all(Path(p).is_file() for s in sections for p in s["plots"]) and sections[1]["plots"]
    by_q = {r["charge"]: r for r in sections[0]["rows"] if "limit" in r}
    assert by_q[1]["E_f_at_VBM_eV"] - by_q[1]["uncorrected_eV"] == pytest.approx(
        corr["correction_eV"], abs=2e-4
    )
    files = write_report(sections, tmp_path / "report", title="V_H in LiH")
    html = Path(files["html"]).read_text()
    assert "measured" in html and "uncorrected" in html


def test_plan_reports_the_potential_post_steps(tmp_path):
    from perovflow.workflows.planning import describe, format_plan

    path = tmp_path / "study.yaml"
    path.write_text(STUDY.format(charges="[-1, 0, 1]", extra=""))
    study = load_study(path)
    data = describe(study, build_flow(study))
    # the bulk supercell and the two charged cells; the neutral one needs none
    assert data["potential_post_steps"] == {"qe": 3}
    assert data["calculations"]["qe"]["static"] == 4
    assert "3 pp.x plot_num=11" in format_plan(data)


def test_an_upstream_dielectric_maker_runs_on_the_relaxed_bulk_unless_the_study_gives_eps():
    from dataclasses import dataclass

    from jobflow import Maker, job

    from perovflow.engines.registry import get_maker
    from perovflow.structures.io import load_structure
    from perovflow.workflows.vacancy import VacancyFlowMaker

    @dataclass
    class Dielectric(Maker):  # the interface of h2's maker: epsilon_static/electronic 3x3
        name: str = "dielectric"

        @job
        def make(self, structure):
            return {"epsilon_static": np.eye(3).tolist(), "epsilon_electronic": np.eye(3).tolist()}

    base = {"relax_maker": get_maker("qe", "relax", protocol="fast"), "supercell": "2x2x2",
            "static_maker": get_maker("qe", "static", protocol="fast"), "elements": ["Br"],
            "charge_states": {"Br": [0, 1]}, "dielectric_maker": Dielectric()}  # fmt: skip
    flow = VacancyFlowMaker(**base).make(load_structure("CsBr"))
    eps = next(j for j in flow.jobs if j.name == "bulk dielectric")
    relax = next(j for j in flow.jobs if j.name == "bulk relax")
    assert eps.function_args[0].uuid == relax.uuid  # the relaxed bulk cell
    assert _report(flow).function_args[5].uuid == eps.uuid
    given = VacancyFlowMaker(**base, dielectric={"tensor": 6.5, "source": "paper"})
    flow = given.make(load_structure("CsBr"))
    assert "bulk dielectric" not in {j.name for j in flow.jobs}  # the study's value wins
