"""atomate2 and perovflow makers in each other's flows (real CHGNet, real pw.x)."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

STUDY = """
study: vacancy
name: a2-prerelax
protocol: fast
code: qe
relax: false
structure: {prototype: CsPbBr3-cubic}
vacancy: {elements: [Br], charge_states: {Br: [1]}}
"""


def _cubic() -> Structure:
    return Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(5.87), ["Cs", "Pb", "Br"], [[0, 0, 0], [0.5] * 3, [0, 0.5, 0.5]]
    )


def test_perovflow_mlip_makers_are_atomate2_force_field_makers():
    from atomate2.forcefields.jobs import ForceFieldRelaxMaker, ForceFieldStaticMaker

    from perovflow.engines.mlip.jobs import MLIPRelaxMaker, MLIPStaticMaker

    assert issubclass(MLIPRelaxMaker, ForceFieldRelaxMaker)
    assert issubclass(MLIPStaticMaker, ForceFieldStaticMaker)
    # atomate2 flows set write_additional_data on their static makers: it must be a field
    job = MLIPStaticMaker().make(_cubic())
    job.update_maker_kwargs({"_set": {"write_additional_data->info:json": {"a": 1}}}, dict_mod=True)
    assert job.function.__self__.write_additional_data == {"info:json": {"a": 1}}


@pytest.mark.mlip
@pytest.mark.qe
def test_study_takes_atomate2_prerelax_and_atomate2_reads_qe_output(tmp_path):
    """An atomate2 ForceFieldRelaxMaker (CHGNet, packaged weights) pre-relaxes a perovflow
    study; the QE static documents answer atomate2's ``output.energy`` / ``output.structure``."""
    from ase.io import read
    from atomate2.forcefields.jobs import ForceFieldRelaxMaker
    from pymatgen.core import Structure as PmgStructure

    from perovflow.hpc.store import get_job_store
    from perovflow.workflows.runner import run_flow
    from perovflow.workflows.studies import build_flow, load_study

    path = tmp_path / "study.yaml"
    path.write_text(STUDY)
    pre = ForceFieldRelaxMaker(force_field_name="CHGNet", relax_cell=False, steps=50,
                               relax_kwargs={"fmax": 0.1})  # fmt: skip
    flow = build_flow(load_study(path), {"prerelax": pre, "dos": None})
    store = get_job_store()
    info = run_flow(flow, store=store, root_dir=tmp_path / "run", study="a2-prerelax")
    assert info["failed"] == []
    docs = {d["name"]: d for d in store.query({}, properties=["name", "output"])}
    pre_doc = docs["V_Br q=+1 ml-prerelax"]["output"]
    assert pre_doc["@class"] == "ForceFieldTaskDocument"  # atomate2's own document
    static = docs["V_Br q=+1 static"]["output"]
    # the study's QE static ran on the atomate2-relaxed cell
    relaxed = PmgStructure.from_dict(pre_doc["structure"])
    used = PmgStructure.from_dict(static["output"]["structure"])
    assert np.allclose(relaxed.cart_coords, used.cart_coords, atol=1e-6)
    # atomate2 names, checked against pw.x's own output read by ASE (an independent parser)
    pwo = read(f"{static['dir_name']}/espresso.pwo")
    assert static["output"]["energy"] == pytest.approx(pwo.get_potential_energy(), abs=1e-4)
    assert static["charge"] == 1 and len(used) == 4
    hits = list(store.query({"output.output.energy": {"$lt": 0}}, properties=["name"]))
    assert {"bulk supercell static", "V_Br q=+1 static"} <= {h["name"] for h in hits}


def test_qe_maker_takes_the_charge_atomate2_puts_on_the_structure():
    from atomate2.common.jobs.defect import get_charged_structures

    from perovflow.engines.base import with_structure_charge
    from perovflow.engines.qe.jobs import QEStaticMaker

    charged = get_charged_structures.original(_cubic(), [1])[0]  # atomate2's own way
    maker = QEStaticMaker()
    assert with_structure_charge(maker, charged).charge == 1.0
    assert maker.charge == 0.0  # the maker itself is not changed
    assert with_structure_charge(QEStaticMaker(charge=-1), charged).charge == -1  # user wins
    assert with_structure_charge(maker, _cubic()) is maker
