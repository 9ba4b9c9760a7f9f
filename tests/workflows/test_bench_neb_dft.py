"""``benchmarks/bench_neb_dft.py --smoke`` at its smallest: real pw.x, one image, no rounds.

Independent facts checked: the hop joins two symmetry-equivalent Br sites of cubic CsPbBr3,
so both end points have the same DFT energy (10 meV); pw.x's own output says D3 was on, the
cutoff was 15 Ry, Γ only, and the image's first scf started from the density and
wavefunctions of an end point (copied into its folder); a restarted run repeats no pw.x run
(the output files on disk stay untouched) and replays every call. About 1 min on a quiet
2-core machine (~60 s CPU); far longer when the machine is shared.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bench_neb_dft.py"
SADDLE = SCRIPT.with_name("bench_saddle_dft.py")


def _script():
    spec = importlib.util.spec_from_file_location("bench_neb_dft", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.qe
@pytest.mark.mlip
@pytest.mark.slow
def test_smoke_run_is_dft_d3_seeded_and_resumes_without_pwx(tmp_path, monkeypatch):
    monkeypatch.setenv("PEROVFLOW_PARALLEL__RANKS", "2")
    bench = _script()
    argv = ["--smoke", "--images", "1", "--outer-steps", "0", "--out", str(tmp_path)]
    first = bench.main(argv)[0]["dft"]
    folder = tmp_path / "smoke"
    energies = first["image_energies_eV"]
    assert abs(energies[0] - energies[-1]) < 0.01
    pwo = (folder / "pw" / "image_01" / "espresso.pwo").read_text()
    assert "DFT-D3 Dispersion" in pwo
    assert "kinetic-energy cutoff     =      15.0000  Ry" in pwo
    assert "number of k points=     1" in pwo
    assert "The initial density is read from file" in pwo
    assert "Starting wfcs from file" in pwo
    outputs = sorted(folder.glob("pw/*/espresso.pwo"))
    stamps = [p.stat().st_mtime_ns for p in outputs]
    (folder / "result.json").unlink()
    again = bench.main(argv)[0]["dft"]
    assert [p.stat().st_mtime_ns for p in outputs] == stamps  # from the checkpoint: no pw.x
    assert again["expensive_calls"] == first["expensive_calls"] and again["replayed_calls"] == 0
    assert again["barrier_forward_eV"] == pytest.approx(first["barrier_forward_eV"], abs=1e-9)
    # without the checkpoint, the stored calls replay (same machine: same geometries)
    for name in ("checkpoint.json", "result.json"):
        (folder / name).unlink()
    replay = bench.main(argv)[0]["dft"]
    assert [p.stat().st_mtime_ns for p in outputs] == stamps
    assert replay["replayed_calls"] == replay["expensive_calls"] == first["expensive_calls"]
    assert replay["barrier_forward_eV"] == pytest.approx(first["barrier_forward_eV"], abs=1e-9)
    calls = json.loads((folder / "progress.json").read_text())["calls"]
    assert len(calls) == first["expensive_calls"]
    # a changed potential (here: the record edited as a new ld1.x recipe would change it)
    # must not replay the stored calls; the stored calls stay as they are
    ident = json.loads((folder / "identity.json").read_text())
    ident["pseudopotentials"]["Cs"] = {"family": "other"}
    (folder / "identity.json").write_text(json.dumps(ident))
    (folder / "result.json").unlink()
    before = (folder / "calls.jsonl").read_bytes()
    with pytest.raises(SystemExit, match="other pseudopotentials"):
        bench.main(argv)
    assert (folder / "calls.jsonl").read_bytes() == before


def test_calls_without_a_recorded_identity_are_not_replayed(tmp_path):
    # a folder from before identities were recorded (the GTH-Na calls of 1 December) is refused
    bench = _script()
    (tmp_path / "calls.jsonl").write_text('{"energy": 0.0}\n')
    with pytest.raises(SystemExit, match=r"move .* away"):
        bench.check_identity(tmp_path, {"pseudopotentials": {}, "protocol": "fast", "pw.x": {}})
    assert not (tmp_path / "identity.json").exists()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    bench.check_identity(fresh, {"pseudopotentials": {}, "protocol": "fast", "pw.x": {}})
    bench.check_identity(fresh, {"pseudopotentials": {}, "protocol": "fast", "pw.x": {}})
    assert json.loads((fresh / "identity.json").read_text())["protocol"] == "fast"


@pytest.mark.qe
@pytest.mark.mlip
def test_smoke_saddle_is_a_maximum_along_the_hop_and_resumes_without_pwx(tmp_path, monkeypatch):
    """``bench_saddle_dft.py --smoke`` on the smoke band's end points: real pw.x, the
    symmetry-constrained saddle lies above both end points, on the dividing surface, with
    negative curvature along the hop (an independent finite-difference call); a rerun repeats
    no pw.x run."""
    monkeypatch.setenv("PEROVFLOW_PARALLEL__RANKS", "2")
    argv = ["--smoke", "--images", "1", "--outer-steps", "0", "--out", str(tmp_path)]
    _script().main(argv)
    spec = importlib.util.spec_from_file_location("bench_saddle_dft", SADDLE)
    saddle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(saddle)
    first = saddle.main(argv)[0]
    assert first["converged"] and first["max_force_eV_A"] < 0.1
    assert first["curvature_eV_A2"] < 0 and first["asymmetry_A"] < 1e-3
    assert 0.05 < first["barrier_eV"] < 2.0
    folder = tmp_path / "smoke"
    outputs = sorted(folder.glob("saddle/*/espresso.pwo"))
    stamps = [p.stat().st_mtime_ns for p in outputs]
    (folder / "saddle.json").unlink()
    again = saddle.main(argv)[0]
    assert [p.stat().st_mtime_ns for p in outputs] == stamps
    assert again["barrier_eV"] == pytest.approx(first["barrier_eV"], abs=1e-9)
    # the cutoff check: single points from scratch at the smoke's own 15 Ry give back the
    # relaxation's barrier; 20 Ry is a second row
    series = saddle.main([*argv, "--cutoffs", "15,20"])[0]["cutoffs"]
    assert [r["ecutwfc_Ry"] for r in series] == [15.0, 20.0]
    assert series[0]["barrier_eV"] == pytest.approx(first["barrier_eV"], abs=2e-3)
