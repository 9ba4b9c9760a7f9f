"""RP fault: the vacancy is found frame by frame as the empty halide site of the perfect cell."""

from __future__ import annotations

import numpy as np
import pytest

from perovflow.structures.faults import place_halide_vacancy, rp_fault
from perovflow.workflows.rp_fault import classify_hops, crossings, vacancy_track


def halide_frame(structure, element):
    return np.array([s.frac_coords % 1.0 for s in structure if s.specie.symbol == element])


def test_vacancy_track_follows_a_hop():
    host = rp_fault("CsPbBr3-cubic", "CsPbI3-cubic", 2, 2)
    cell, info = place_halide_vacancy(host, "near")
    element = info["element"]
    first = halide_frame(cell, element)
    track = vacancy_track(host, [first], element)
    assert track[0]["site"] == info["index"]
    assert track[0]["domain"] == host.site_properties["domain"][info["index"]]
    # move the nearest halide of the same element into the vacancy: the vacancy jumps to its site
    sites = [i for i, s in enumerate(host) if s.specie.symbol == element and i != info["index"]]
    nearest = min(sites, key=lambda i: host.get_distance(i, info["index"]))
    moved = first.copy()
    row = [
        i for i, s in enumerate(host) if s.specie.symbol == element and i != info["index"]
    ].index(nearest)
    moved[row] = host[info["index"]].frac_coords % 1.0
    track = vacancy_track(host, [first, moved], element)
    assert track[1]["site"] == nearest
    assert crossings(track) == int(track[0]["domain"] != track[1]["domain"])


def test_hops_split_into_along_and_across_the_fault():
    from perovflow.structures.paths import enumerate_hops

    host = rp_fault("CsPbBr3-cubic", "CsPbI3-cubic", 2, 2)
    _, info = place_halide_vacancy(host, "near")
    hops = enumerate_hops(host, info["element"], vacancy_site=info["index"], cutoff=6.5)
    picked = classify_hops(host, hops)
    domains = host.site_properties["domain"]
    assert "along" in picked
    assert domains[picked["along"].from_index] == domains[info["index"]]
    if "across" in picked:
        assert domains[picked["across"].from_index] != domains[info["index"]]


@pytest.mark.mlip
@pytest.mark.slow
def test_rp_fault_study_with_ml_potential(tmp_path):
    from pathlib import Path

    from perovflow.hpc.store import get_job_store
    from perovflow.workflows.runner import run_flow
    from perovflow.workflows.studies import build_flow, load_study

    study = load_study(Path(__file__).resolve().parents[2] / "studies" / "rp_fault_fast.yaml")
    flow = build_flow(study)
    store = get_job_store()
    info = run_flow(flow, store=store, root_dir=tmp_path, study=study.name)
    assert info["failed"] == []
    report = store.get_output(flow.output.uuid, load=True)
    assert (
        report["vacancy"]["near"]["distance_to_fault_A"]
        < report["vacancy"]["far"]["distance_to_fault_A"]
    )
    assert report["segregation_eV"] is not None
    assert "along" in report["barriers_eV"] and report["barriers_eV"]["along"] > 0
    # 200 steps recorded every 10: the vacancy is located in every frame
    assert report["md_frames"] in (20, 21)
    assert report["md_crossings"] >= 0
    assert set(report["vacancy_domains_visited"]) <= {"CsPbBr3", "CsPbI3"}
