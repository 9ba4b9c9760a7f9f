"""Study files: validation (one-line errors), plan counts, and user settings winning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perovflow.errors import InputError
from perovflow.workflows.studies import build_flow, load_study, makers, plan

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


VACANCY = """
study: vacancy
name: vbr-test
protocol: fast
code: qe
prerelax: null
structure: {prototype: Cs4PbBr6, cell: primitive}
settings:
  relax: {ecutwfc: 31}
vacancy: {elements: [Br], charge_states: {Br: [0, 1]}}
"""


def test_unknown_key_is_one_line_error(tmp_path):
    path = write(tmp_path, VACANCY + "colour: blue\n")
    with pytest.raises(InputError) as err:
        load_study(path)
    assert "colour" in str(err.value) and "\n" not in str(err.value)


def test_missing_section_and_bad_yaml(tmp_path, cli):
    with pytest.raises(InputError, match="no 'migration:' section"):
        load_study(write(tmp_path, "study: migration\nname: x\n"))
    code, _, err = cli("plan", write(tmp_path, "study: [unclosed\n"))
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_vacancy_plan_counts_symmetry_reduction(tmp_path):
    data = plan(write(tmp_path, VACANCY))
    # Cs4PbBr6 (R-3c): all 12 Br of the primitive cell sit on one Wyckoff orbit (36f)
    sym = data["symmetry"]
    assert sym["items_distinct"] == 2 and sym["items_total"] == 24  # 1 site x 2 charges vs 12 x 2
    qe = data["calculations"]["qe"]
    # bulk vc-relax + 2 defect relaxes; static + pdos for the bulk supercell and both defects
    assert qe == {"dos": 3, "relax": 2, "static": 3, "vc-relax": 1}
    assert data["dft_calculations"] == 9
    # each dos is an nscf pw.x run and a projwfc.x run
    assert data["programs"] == {"projwfc.x": 3, "pw.x": 9}
    assert sym["calcs_saved"] == (24 - 2) * 3


@pytest.mark.parametrize(
    ("dos", "fused"), [("{kpts: gamma}", True), ("{kpts: [2, 2, 2]}", False), (None, False)]
)
def test_a_dos_on_the_scf_grid_is_projected_from_the_scf(tmp_path, dos, fused):
    """static and dos with the same settings: the nscf would redo the scf's diagonalisation at
    the same k-points, so each static projects its own states (pw.x + projwfc.x, no nscf)."""
    settings = "settings:\n  static: {kpts: gamma}\n" + (f"  dos: {dos}\n" if dos else "")
    path = write(tmp_path, VACANCY.replace("settings:\n  relax: {ecutwfc: 31}\n", settings))
    data = plan(path)
    qe, programs = data["calculations"]["qe"], data["programs"]
    assert qe["static"] == 3 and qe.get("dos", 0) == (0 if fused else 3)
    assert programs["pw.x"] == (6 if fused else 9) and programs["projwfc.x"] == 3
    chosen = makers(load_study(path))
    assert chosen["static"].projwfc is fused and (chosen["dos"] is None) is fused


def test_plan_cli_json(tmp_path, cli):
    code, out, _ = cli("plan", write(tmp_path, VACANCY), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["jobs"] == len(data["graph"]) and data["kind"] == "vacancy"


def test_user_settings_win_over_protocol(tmp_path):
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.engines.pseudos import get_pseudos
    from perovflow.engines.qe.inputs import qe_input_set
    from perovflow.structures.prototypes import build_prototype

    flow = build_flow(write(tmp_path, VACANCY))
    relaxes = [
        j for j, _ in flow.iterflow() if (j.metadata.get("calc") or {}).get("kind") == "relax"
    ]
    assert relaxes
    for job_ in relaxes:
        maker = job_.function.__self__
        assert maker.input_set_overrides == {"ecutwfc": 31}
        assert maker.protocol == "fast"
    atoms = AseAtomsAdaptor.get_atoms(build_prototype("Cs4PbBr6", cell="primitive"))
    pseudos = get_pseudos(["Cs", "Pb", "Br"], "qe")
    args = (atoms, "relax", maker.protocol, pseudos)
    default = qe_input_set(*args)["input_data"]["system"]["ecutwfc"]
    user = qe_input_set(*args, overrides=maker.input_set_overrides)["input_data"]["system"][
        "ecutwfc"
    ]
    assert (
        default == pytest.approx(25.0, abs=0.05) and user == 31
    )  # fast is 25 Ry; the user's 31 wins


def test_neb_maker_settings_win(tmp_path):
    from perovflow.workflows.migration import NEBMaker

    assert NEBMaker(protocol="seed").settings()["nimages"] == 9
    assert NEBMaker(protocol="seed", nimages=3, fmax=0.2).settings() == {
        "protocol": "seed", "nimages": 3, "fmax": 0.2,
    }  # fmt: skip


@pytest.mark.parametrize("path", sorted((REPO / "studies").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_study_files_validate(path):
    study = load_study(path)
    assert study.section() is not None


@pytest.mark.parametrize("path", sorted((REPO / "studies").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_study_plans_and_relaxes_its_cells(path):
    """Every study file plans; wherever a flow relaxes a crystal it relaxes the cell too
    (issue #12): a bulk or competing-phase relax is a vc-relax, positions-only relaxes are
    left to defect and NEB end-point cells, and the runs per executable are listed."""
    from perovflow.workflows.planning import format_plan

    data = plan(path)
    assert data["jobs"] == len(data["graph"]) > 0
    assert data["calculations"]
    if any(c in ("qe", "cp2k") for c in data["calculations"]):  # ML-only studies run none
        assert data["programs"]
    for row in data["graph"]:
        kind = (row["calc"] or {}).get("kind")
        if (row["calc"] or {}).get("code") in ("qe", "cp2k") and row["name"].endswith(" relax"):
            bulk = row["name"].split()[0] in ("bulk",) or "phase" in row["name"]
            assert kind == "vc-relax" or not bulk, row
    assert format_plan(data).startswith(f"study {data['study']}")
