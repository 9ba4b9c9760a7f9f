"""NEB barriers, band-alignment classification, effective-mass fit, reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from perovflow.analysis.alignment import align_domains, classify, offsets_from_potential
from perovflow.analysis.neb import EV_TO_KCAL_MOL, analyze_neb, plot_neb, read_qe_path_file
from perovflow.analysis.report import section, write_report
from perovflow.errors import InputError
from perovflow.projections import StateProjections

A, DE = 0.5, -0.2  # barrier height scale and reaction energy of the model path (eV)


def model_energy(x: float) -> float:
    """E(x) = A sin^2(pi x) + DE x along x in [0, 1] (x = hop coordinate / 2 Å)."""
    return A * np.sin(np.pi * x) ** 2 + DE * x


def model_images(n: int = 9) -> list[Atoms]:
    images = []
    for x in np.linspace(0, 1, n):
        atoms = Atoms("H2", positions=[[0, 0, 0], [2.0 * x + 3, 0, 0]])
        dedx = A * np.pi * np.sin(2 * np.pi * x) + DE
        forces = np.zeros((2, 3))
        forces[1, 0] = -dedx / 2.0  # dE/d(position) = dE/dx / 2 Å
        atoms.calc = SinglePointCalculator(atoms, energy=model_energy(x), forces=forces)
        images.append(atoms)
    return images


def test_neb_barriers_match_the_model_maximum(tmp_path: Path):
    xs = np.linspace(0, 1, 20001)
    exact = max(model_energy(x) for x in xs)
    res = analyze_neb(model_images())
    assert res.barrier_forward_eV == pytest.approx(exact, abs=2e-3)
    assert res.reaction_energy_eV == pytest.approx(DE)
    assert res.barrier_backward_eV == pytest.approx(exact - DE, abs=2e-3)
    # CODATA via scipy (an independent library): 1 eV = e N_A / 4184 J/kcal = 23.0605 kcal/mol
    from scipy.constants import N_A, e

    assert res.barrier_forward_kcal_mol == pytest.approx(res.barrier_forward_eV * e * N_A / 4184)
    assert pytest.approx(23.0605, abs=1e-4) == EV_TO_KCAL_MOL
    assert res.ts_image == 4
    raw = analyze_neb(model_images(), fit=False)
    assert raw.barrier_forward_eV <= res.barrier_forward_eV + 1e-9
    assert plot_neb(res, tmp_path / "neb.png").is_file()


def test_neb_from_trajectory_file_and_bad_inputs(tmp_path: Path):
    from ase.io import write

    traj = tmp_path / "band.extxyz"
    write(traj, model_images())
    assert analyze_neb(traj).ts_image == 4
    with pytest.raises(InputError, match="at least 3 images"):
        analyze_neb(model_images()[:2])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no NEB result"):
        analyze_neb(tmp_path / "empty")


def test_qe_path_file_units(tmp_path: Path):
    # two atoms, three images: energies in Hartree, positions in bohr, gradients Ha/bohr
    lines = [
        "RESTART INFORMATION",
        "  0",
        "  0",
        "  0",
        "NUMBER OF IMAGES",
        "  3",
        "ENERGIES, POSITIONS AND GRADIENTS",
    ]
    for i, e in enumerate((-10.0, -9.99, -10.002)):
        lines += [f"Image: {i + 1}", f"  {e}"]
        lines += ["  0.0 0.0 0.0  0.0 0.0 0.0  0 0 0", f"  {2.0 + i} 0.0 0.0  0.01 0.0 0.0  1 1 1"]
    path = tmp_path / "pwscf.path"
    path.write_text("\n".join(lines) + "\n")
    images = read_qe_path_file(path)
    assert images[1].get_potential_energy() - images[0].get_potential_energy() == pytest.approx(
        0.01 * 27.211386, rel=1e-6
    )
    assert images[0].positions[1, 0] == pytest.approx(2.0 * 0.529177, rel=1e-6)
    assert images[0].get_forces()[1, 0] == pytest.approx(-0.01 * 27.211386 / 0.529177, rel=1e-6)
    path.write_text("\n".join(lines[:12]) + "\n")
    with pytest.raises(InputError, match=r"not a complete neb.x"):
        read_qe_path_file(path)


@pytest.mark.parametrize(
    ("edges", "kind"),
    [
        ((0.0, 3.0, -0.5, 3.5), "type I"),  # A's gap nested in B's
        ((0.0, 2.0, -0.5, 1.5), "type II"),  # staggered
        ((0.0, 2.0, -0.5, 2.03), "quasi-type II"),  # CB offset 30 meV: shared electron
    ],
)
def test_alignment_classification(edges, kind):
    assert classify(*edges)[0] == kind


def test_domain_alignment_from_projections():
    # domain A atoms 0-1, domain B atoms 2-3; A: VB top 0.0, CB 2.0; B: VB top -0.6, CB 2.5
    e = np.array([-1.0, -0.6, 0.0, 2.0, 2.5, 3.0])
    a, b = [1, 1, 0, 0], [0, 0, 1, 1]
    w = np.array([b, b, a, a, b, a], dtype=float) / 2
    proj = StateProjections(
        e, w, ["Cs", "Pb", "Br", "S"], occupations=np.array([1, 1, 1, 0, 0, 0.0])
    )
    res = align_domains(proj, {"A": [0, 1], "B": [2, 3]}, sigma=0.02)
    # edges sit where the PDOS rises above 5 % of its peak: within ~2.5 sigma of the state
    assert res.edges["A"]["vbm_eV"] == pytest.approx(0.0, abs=0.06)
    assert res.edges["A"]["cbm_eV"] == pytest.approx(2.0, abs=0.06)
    assert res.edges["B"]["vbm_eV"] == pytest.approx(-0.6, abs=0.06)
    assert res.edges["B"]["cbm_eV"] == pytest.approx(2.5, abs=0.06)
    assert res.alignment == "type I"  # A's gap (0..2) lies inside B's (-0.6..2.5)
    assert res.valence_offset_eV == pytest.approx(0.6, abs=0.01)


def test_offsets_from_planar_potential_step():
    x = np.linspace(0, 1, 400, endpoint=False)
    profile = np.where((x > 0.25) & (x < 0.75), 1.0, 0.0) + 0.05 * np.cos(2 * np.pi * x * 20)
    bulk_a = {"vbm_eV": 3.0, "cbm_eV": 5.0, "v_avg_eV": 0.5}
    bulk_b = {"vbm_eV": 2.0, "cbm_eV": 6.0, "v_avg_eV": -0.5}
    res = offsets_from_potential(profile, 40.0, (0.05, 0.2), (0.35, 0.65), bulk_a, bulk_b, 2.0)
    # A: 3.0 - 0.5 + 0 = 2.5 ; B: 2.0 + 0.5 + 1.0 = 3.5 -> dEv = -1.0, dEc = (4.5 - 7.5) = -3.0
    assert res.valence_offset_eV == pytest.approx(-1.0, abs=0.02)
    assert res.conduction_offset_eV == pytest.approx(-3.0, abs=0.02)
    assert res.meta["potential_step_eV"] == pytest.approx(-1.0, abs=0.02)


def test_write_report_markdown_html_and_provenance(tmp_path: Path):
    res = analyze_neb(model_images())
    png = plot_neb(res, tmp_path / "src" / "neb.png")
    sec = section(res, "V_Br hop", [png], {"task_uuid": "abc-123", "dir_name": "/calc/neb"})
    sec["rows"] = [{"direction": "k3->\\Gamma", "kpoint": "B_1"}]
    answer = "The V_Br hop costs 0.40 eV."
    paths = write_report([sec], tmp_path / "out", settings={"protocol": "fast"}, answer=answer)
    md = paths["markdown"].read_text()
    assert md.index(answer) < md.index("## V_Br hop")  # the answer comes first
    assert "barrier forward (eV)" in md and "figures/neb.png" in md
    assert md.count("abc-123") == 1  # provenance once per section, not on every row
    html = paths["html"].read_text()
    assert html.index(answer) < html.index("V_Br hop</h2>")
    assert "<img src='data:image/png;base64," in html  # one file to share, plots inline
    assert "k3→Γ" in html and "B₁" in html and "\\Gamma" not in html  # labels rendered
    assert "<details><summary>Provenance</summary>" in html and html.count("abc-123") == 1
    assert "V_Br hop" in paths["json"].read_text()
    figures = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert figures == ["figures"] and (tmp_path / "out" / "figures" / "neb.png").is_file()
    for f in [*paths.values(), tmp_path / "out" / "figures" / "neb.png"]:
        if f.is_file():
            assert f.stat().st_mode & 0o044 == 0o044, f  # readable by group and others


def test_report_keeps_plots_already_in_figures(tmp_path: Path):
    out = tmp_path / "rep"
    png = plot_neb(analyze_neb(model_images()), out / "figures" / "neb.png")
    write_report([section({"x": 1.0}, "plot", [png])], out)
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["neb.png"]  # no copy


def test_report_bad_input(tmp_path: Path):
    with pytest.raises(InputError, match="empty"):
        write_report([], tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        write_report([{"title": "x", "plots": [str(tmp_path / "nope.png")]}], tmp_path / "r")
    assert not (tmp_path / "r" / "report.md").exists()
