"""Migration flow with ``symmetric_ends``: the final end point as the relaxed initial one's
symmetry image, checked against the flow that relaxes it (CHGNet, the Cl hop in Cs2NaBiCl6)."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _study(tmp_path, name: str, symmetric: bool):
    from perovflow.structures.paths import enumerate_hops
    from perovflow.structures.prototypes import build_prototype

    host = build_prototype("Cs2NaBiCl6", cell="conventional")
    label = min(enumerate_hops(host, "Cl"), key=lambda h: h.length).label
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"study: migration\nname: {name}\nprotocol: fast\ncode: mlip\nprerelax: null\n"
        "structure: {prototype: Cs2NaBiCl6, cell: conventional}\n"
        f"migration:\n  vacancy_element: Cl\n  hops: [{json.dumps(label)}]\n"
        f"  relax_bulk: false\n  symmetric_ends: {str(symmetric).lower()}\n"
        "  neb: {nimages: 3, fmax: 0.1, method: plain}\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.mlip
def test_symmetric_ends_map_the_final_end_point_instead_of_relaxing_it(tmp_path, cli):
    from perovflow.hpc.store import get_job_store
    from perovflow.workflows.studies import build_flow, load_study

    runs = {}
    for name, symmetric in (("cl-two-relaxes", False), ("cl-mapped", True)):
        study = _study(tmp_path, name, symmetric)
        names = [j.name for j in build_flow(load_study(study)).jobs]
        assert ("path 1 final relax" in names) is not symmetric
        assert ("path 1 final (symmetry image)" in names) is symmetric
        code, out, err = cli("run", study, "-w", tmp_path / name, "--quiet")
        assert code == 0, err
        runs[name] = out.splitlines()[2].split()
    store = get_job_store()
    store.connect()

    def final_end(study: str) -> np.ndarray:
        doc = store.query_one({"name": "path 1 neb", "metadata.study": study}, load=True)
        return np.array(doc["output"]["images"][-1]["positions"])

    # the mapped final end point is where relaxing it directly leads (CHGNet, fmax 0.1) ...
    shift = np.linalg.norm(final_end("cl-mapped") - final_end("cl-two-relaxes"), axis=1).max()
    assert shift < 0.05
    # ... with the same barrier and both end points reported relaxed
    barrier = {k: float(v[-5]) for k, v in runs.items()}
    assert barrier["cl-mapped"] == pytest.approx(barrier["cl-two-relaxes"], abs=0.02)
    assert runs["cl-mapped"][-1] == "yes/yes"
