"""The calculation hash: the pseudopotential files count, the parallel layout and paths do not."""

from __future__ import annotations

import shutil

from pymatgen.core import Lattice, Structure

from perovflow.engines.fingerprint import result_parameters, task_hash
from perovflow.engines.qe.jobs import QEStaticMaker
from perovflow.hpc.submit import job_hashes
from perovflow.workflows.runner import assign_calc_hashes, assign_resume_keys

UPF = {"Cs": "<UPF version='2.0.1'> Cs q9 </UPF>\n", "Br": "<UPF version='2.0.1'> Br q7 </UPF>\n"}


def csbr() -> Structure:
    return Structure(Lattice.cubic(4.286), ["Cs", "Br"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _hashes(flow) -> tuple[str, str, str]:
    """(metadata calc_hash, resume key, submit hash) of a one-job flow, recomputed."""
    uuid = flow.jobs[0].uuid
    calc = assign_calc_hashes(flow)[uuid]
    resume = assign_resume_keys(flow)[uuid]
    submit = job_hashes(flow)[uuid]
    return calc, resume, submit


def one_job_flow(**fields):
    from jobflow import Flow

    return Flow([QEStaticMaker(**fields).make(csbr())])


def test_pseudopotential_files_change_the_hash_mpi_prefix_does_not(tmp_path, monkeypatch):
    folder = tmp_path / "sssp"
    folder.mkdir()
    for el, text in UPF.items():
        (folder / f"{el}.upf").write_text(text)
    monkeypatch.setenv("PEROVFLOW_QE__PSEUDO_DIR", str(folder))
    job = one_job_flow(protocol="fast")
    first = _hashes(job)
    assert job.jobs[0].metadata["calc_hash"] == first[0]  # written where submit reads it

    (folder / "Br.upf").write_text(UPF["Br"].replace("q7", "q7 (edited)"))
    edited = _hashes(job)
    assert all(a != b for a, b in zip(first, edited, strict=True))

    (folder / "Br.upf").write_text(UPF["Br"])  # the same bytes again: the same md5
    assert _hashes(job) == first

    monkeypatch.setenv("PEROVFLOW_PARALLEL__MPI_PREFIX", "mpirun -np 8")
    monkeypatch.setenv("PEROVFLOW_QE__NPOOL", "4")
    assert _hashes(job) == first

    moved = tmp_path / "elsewhere" / "sssp"  # the same files in another folder
    shutil.copytree(folder, moved)
    monkeypatch.setenv("PEROVFLOW_QE__PSEUDO_DIR", str(moved))
    assert _hashes(job) == first


def test_switching_from_gth_to_a_pseudo_folder_changes_the_hash(tmp_path, monkeypatch):
    job = one_job_flow(protocol="fast")
    gth = _hashes(job)
    folder = tmp_path / "sssp"
    folder.mkdir()
    for el, text in UPF.items():
        (folder / f"{el}.upf").write_text(text)
    monkeypatch.setenv("PEROVFLOW_QE__PSEUDO_DIR", str(folder))
    assert _hashes(job)[0] != gth[0]


def test_protocol_values_and_maker_settings_count_job_names_do_not(tmp_path, monkeypatch):
    base = assign_calc_hashes(QEStaticMaker(protocol="fast").make(csbr()))
    renamed = assign_calc_hashes(QEStaticMaker(name="other", protocol="fast").make(csbr()))
    assert list(base.values()) == list(renamed.values())
    cutoff = assign_calc_hashes(
        QEStaticMaker(protocol="fast", input_set_overrides={"ecutwfc": 30}).make(csbr())
    )
    assert list(cutoff.values()) != list(base.values())
    # the protocol left to the settings: its current values enter, not the maker's None
    monkeypatch.setenv("PEROVFLOW_PROTOCOL", "fast")
    as_fast = assign_calc_hashes(QEStaticMaker().make(csbr()))
    monkeypatch.setenv("PEROVFLOW_PROTOCOL", "standard")
    as_standard = assign_calc_hashes(QEStaticMaker().make(csbr()))
    assert list(as_fast.values()) != list(as_standard.values())


def test_task_hash_ignores_paths_and_run_control(tmp_path):
    from ase.build import bulk

    atoms = bulk("Cs", "bcc", a=6.1)
    params = {"input_data": {"control": {"outdir": "./", "calculation": "scf"},
                             "system": {"ecutwfc": 25.0}}, "kpts": [2, 2, 2]}  # fmt: skip
    moved = {"input_data": {"control": {"outdir": "/scratch/x", "max_seconds": 3000,
                                        "calculation": "scf"}, "system": {"ecutwfc": 25.0},
                            "electrons": {"startingpot": "file"}},
             "kpts": [2, 2, 2], "_restart_structure": "restart_geometry.json"}  # fmt: skip
    assert result_parameters("qe", moved) == result_parameters("qe", params)
    h = task_hash("qe", atoms, params, "static", "fast")
    assert task_hash("qe", atoms, moved, "static", "fast") == h
    params["input_data"]["system"]["ecutwfc"] = 30.0
    assert task_hash("qe", atoms, params, "static", "fast") != h


FR_UPF = '<UPF version=\'2.0.1\'>\n<PP_HEADER has_so="T" z_valence="7"/>\n</UPF>\n'


def test_spin_orbit_hash_follows_the_fully_relativistic_files(tmp_path, monkeypatch):
    """A SOC run reads the FR potentials (has_so), not the scalar ones: their bytes count."""
    folder = tmp_path / "rel-pbe"
    folder.mkdir()
    for el in ("Cs", "Br"):
        (folder / f"{el}.rel.upf").write_text(FR_UPF.replace("7", "9" if el == "Cs" else "7"))
        (folder / f"{el}.upf").write_text(UPF[el])  # scalar-relativistic ones beside them
    monkeypatch.setenv("PEROVFLOW_QE__PSEUDO_DIR", str(folder))
    soc = one_job_flow(protocol="fast", soc=True)
    first = _hashes(soc)
    (folder / "Br.upf").write_text(UPF["Br"] + "edited\n")  # not read by a SOC run
    assert _hashes(soc) == first
    (folder / "Br.rel.upf").write_text(FR_UPF + "<!-- edited -->\n")  # read by it
    assert all(a != b for a, b in zip(first, _hashes(soc), strict=True))


def test_spin_orbit_hash_follows_perovflows_ld1_recipes(monkeypatch):
    """perovflow's own FR family: a changed ld1.x recipe is another calculation."""
    import dataclasses

    from perovflow.engines.qe import ld1_recipes

    soc = one_job_flow(protocol="fast", soc=True)
    first = _hashes(soc)
    assert _hashes(one_job_flow(protocol="fast")) != first  # SOC is not the scalar run
    br = ld1_recipes.RECIPES["Br"]
    monkeypatch.setitem(ld1_recipes.RECIPES, "Br", dataclasses.replace(br, rcloc=br.rcloc + 0.1))
    assert all(a != b for a, b in zip(first, _hashes(soc), strict=True))
