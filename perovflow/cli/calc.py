"""CLI: ``perovflow calc`` (one calculation with QE, CP2K or an ML potential) and ``doctor``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from perovflow.cli._common import JsonOpt, emit, table
from perovflow.errors import InputError

SEED_ELEMENTS = ("Cs", "Pb", "Br", "Cl", "Na", "Ag", "Bi", "I", "Sn", "S", "C", "N", "H")


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``["system.ecutwfc=30", "kpts=[2,2,2]"]`` -> ``{"system.ecutwfc": 30, "kpts": [2, 2, 2]}``."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set '{item}' is not key=value", "write e.g. --set ecutwfc=30")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def load_any_structure(name_or_file: str) -> Any:
    """A pymatgen Structure from a file or a name known to the structures layer."""
    from perovflow.structures.io import load_structure

    return load_structure(name_or_file)


def job_store() -> Any:
    """The project's JobStore (:func:`perovflow.hpc.store.get_job_store`)."""
    from perovflow.hpc.store import get_job_store

    return get_job_store()


def run_calc(
    kind: str,
    structure: Any,
    code: str,
    protocol: str | None,
    charge: float | None,
    overrides: dict[str, Any],
    root: Path,
    prev_dir: str | None = None,
    cell: bool = False,
    spin: bool | None = None,
    soc: bool | None = None,
    xc: str | None = None,
) -> Any:
    """Build the job (scf first when bands/DOS lack ``prev_dir``), run it, return its output.

    ``cell``: a relax relaxes the cell too (QE vc-relax, CP2K CELL_OPT, ML cell filter).
    ``spin``: spin polarisation on (True) or off (False); None leaves the automatic choice
    (odd electron counts). User ``--set`` spin keys (``nspin``, ``tot_magnetization``,
    CP2K ``UKS``) win over it. ``soc``: spin–orbit coupling (QE), None takes the protocol's.
    ``xc``: ``pbe``, ``hse06`` or ``pbe0``, None takes the protocol's.
    """
    from jobflow import Flow, run_locally

    from perovflow.engines.registry import ALIASES, get_maker

    kind = ALIASES.get(kind, kind)
    if code == "qe":  # reject misspelt keys before anything runs
        from perovflow.engines.qe.inputs import nest_overrides

        nest_overrides(overrides)
    common = {"protocol": protocol, "charge": charge, "input_set_overrides": overrides, "soc": soc,
              "xc": xc}  # fmt: skip
    if cell and kind != "relax":
        raise InputError(f"--cell applies to relax, not {kind}", "drop --cell or run calc relax")
    common.update(_spin_fields(code, spin, overrides))
    maker = get_maker(code, kind, **common, **({"relax_cell": True} if cell else {}))
    jobs = []
    if kind in ("bands", "dos") and prev_dir is None:
        scf_overrides = {k: v for k, v in overrides.items() if k not in ("kpts", "kspacing")}
        scf = get_maker(code, "scf", **{**common, "input_set_overrides": scf_overrides}).make(
            structure
        )
        jobs.append(scf)
        prev_dir = scf.output.dir_name
    final = maker.make(structure, prev_dir=prev_dir)
    jobs.append(final)
    root.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # jobflow's own deprecation notice about monty's cd
        warnings.simplefilter("ignore", FutureWarning)
        responses = run_locally(
            Flow(jobs), store=job_store(), create_folders=True, root_dir=root,
            raise_immediately=True, log=False,
        )  # fmt: skip
    return responses[final.uuid][1].output


def _spin_fields(code: str, spin: bool | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """Maker fields for ``--spin/--no-spin``: QE's ``spin`` field, CP2K's ``UKS`` keyword."""
    if spin is None:
        return {}
    if code == "cp2k":
        if "FORCE_EVAL" in overrides:  # the user's raw CP2K sections win
            return {}
        return {"input_set_overrides": {**overrides, "FORCE_EVAL": {"DFT": {"UKS": spin}}}}
    return {"spin": spin}


def _calc_dir(directory: Path | None, kind: str) -> Path:
    if directory is not None:
        return directory.expanduser().resolve()
    from datetime import datetime

    from perovflow.settings import get_settings

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return get_settings().resolved(get_settings().scratch_dir) / f"calc-{kind}-{stamp}"


def lattice_summary(structure: dict[str, Any]) -> dict[str, float]:
    """Lattice lengths (Å), angles (°) and volume (Å³) of a structure dict."""
    from pymatgen.core import Structure

    lat = Structure.from_dict(structure).lattice
    keys = ("a", "b", "c", "alpha", "beta", "gamma")
    return {**dict(zip(keys, (round(x, 5) for x in (*lat.abc, *lat.angles)), strict=True)),
            "volume": round(lat.volume, 4)}  # fmt: skip


def summary(doc: Any) -> dict[str, Any]:
    """The CLI's JSON for one task document (a relax adds its final lattice and stress; a
    dielectric document gives its tensors, whole)."""
    if hasattr(doc, "epsilon_electronic"):
        return doc.model_dump(exclude={"structure"})
    extra = {}
    if doc.calc_type == "relax":
        extra = {"lattice": lattice_summary(doc.structure), "stress_GPa": doc.stress_GPa}
    return {
        "code": doc.code,
        "calc_type": doc.calc_type,
        "formula": doc.formula,
        "energy_eV": doc.energy_eV,
        "band_gap_eV": doc.electronic.band_gap_eV,
        "vbm_eV": doc.electronic.vbm_eV,
        "cbm_eV": doc.electronic.cbm_eV,
        "fermi_eV": doc.electronic.fermi_eV,
        "spin_polarized": doc.electronic.spin_polarized,
        "total_magnetization": doc.electronic.total_magnetization,
        "max_force_eV_per_A": doc.max_force_eV_per_A,
        "converged": doc.converged,
        "walltime_s": doc.walltime_s,
        "recovery": [r.handler for r in doc.recovery],
        "dir": doc.dir_name,
        **extra,
    }


def _row(check: str, ok: bool, detail: str, fix: str = "", required: bool = True) -> dict:
    status = "OK" if ok else ("FAIL" if required else "WARN")
    return {"check": check, "status": status, "detail": detail, "fix": "" if ok else fix}


def _check_executables() -> list[dict[str, Any]]:
    import shlex
    import shutil

    from perovflow.settings import get_settings

    s = get_settings()
    wanted = [
        ("pw.x", s.qe.pw_cmd, True, "apt install quantum-espresso or set qe.pw_cmd"),
        ("projwfc.x", s.qe.projwfc_cmd, True, "apt install quantum-espresso or set qe.projwfc_cmd"),
        ("neb.x", s.qe.neb_cmd, False, "needed for QE NEB; set qe.neb_cmd"),
        ("cp2k", s.cp2k.cmd, False, "apt install cp2k or set cp2k.cmd (also converts GTH for QE)"),
        ("sbatch", "sbatch", False, "install slurm-wlm to submit to a cluster"),
        ("sinfo", "sinfo", False, "install slurm-wlm to submit to a cluster"),
    ]
    rows = []
    for label, cmd, required, fix in wanted:
        found = shutil.which(shlex.split(cmd)[0]) if cmd.strip() else None
        rows.append(
            _row(f"executable {label}", bool(found), found or f"'{cmd}' not found", fix, required)
        )
    return rows


def _check_pseudos(elements: tuple[str, ...]) -> list[dict[str, Any]]:
    from perovflow.engines.pseudos import get_pseudos
    from perovflow.errors import PerovflowError

    rows = []
    for code in ("qe", "cp2k"):
        try:
            found = get_pseudos(list(elements), code)
            detail = " ".join(f"{el}:{p.name}" for el, p in found.items())
            rows.append(_row(f"pseudopotentials {code}", True, detail))
        except PerovflowError as exc:
            rows.append(_row(f"pseudopotentials {code}", False, exc.problem, exc.fix, code == "qe"))
    return rows


def _check_store() -> dict[str, Any]:
    try:
        store = job_store()
        store.connect()
        n = store.docs_store.count()
        store.close()
        return _row("results store", True, f"{type(store.docs_store).__name__}, {n} documents")
    except Exception as exc:  # StoreError or a driver error
        msg = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return _row("results store", False, msg, "fix store.uri (perovflow config) or unset it")


def _check_queue_and_mlip() -> list[dict[str, Any]]:
    import importlib.util
    import subprocess

    from perovflow.settings import get_settings

    try:
        up = subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        up = False
    model = get_settings().mlip.model
    has_ml = importlib.util.find_spec(model) is not None
    return [
        _row("SLURM queue", up, "sinfo answers" if up else "no SLURM controller",
             "start slurmctld/slurmd (scripts/slurm-up.sh) to use the queue", False),
        _row(f"ML potential {model}", has_ml, "importable" if has_ml else "not installed",
             "pip install 'perovflow[mlip]'", False),
    ]  # fmt: skip


def run_checks(elements: tuple[str, ...]) -> list[dict[str, Any]]:
    """All doctor checks: executables, pseudopotentials, store, queue, ML potential."""
    return [
        *_check_executables(),
        *_check_pseudos(elements),
        _check_store(),
        *_check_queue_and_mlip(),
    ]


def register(app: typer.Typer) -> None:
    """Register ``calc`` and ``doctor`` on ``app``."""

    @app.command("calc")
    def calc(
        kind: Annotated[str, typer.Argument(help="scf, relax, bands, dos or dielectric.")],
        structure: Annotated[str, typer.Argument(help="Structure file or known name.")],
        code: Annotated[str, typer.Option(help="qe, cp2k or mlip.")] = "qe",
        protocol: Annotated[
            str | None, typer.Option(help="fast, standard or seed (default: settings).")
        ] = None,
        charge: Annotated[float | None, typer.Option(help="Total charge of the cell (e).")] = None,
        set_: Annotated[
            list[str] | None,
            typer.Option("--set", help="Input override key=value (e.g. ecutwfc=30, kpts=[2,2,2])."),
        ] = None,
        directory: Annotated[
            Path | None, typer.Option("--dir", help="Folder for the calculation(s).")
        ] = None,
        prev_dir: Annotated[
            str | None, typer.Option(help="scf folder to start bands/dos from.")
        ] = None,
        cell: Annotated[
            bool, typer.Option("--cell", help="relax: relax the cell too (vc-relax/CELL_OPT).")
        ] = False,
        spin: Annotated[
            bool | None,
            typer.Option(
                "--spin/--no-spin",
                help="Spin-polarised run on/off [default: on for odd electron counts].",
            ),
        ] = None,
        soc: Annotated[
            bool | None,
            typer.Option("--soc/--no-soc", help="Spin-orbit coupling (QE; default: protocol)."),
        ] = None,
        xc: Annotated[
            str | None,
            typer.Option("--xc", help="Functional: pbe, hse06 or pbe0 (default: protocol)."),
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Run one calculation and print energy, gap, wall time and its folder."""
        doc = run_calc(
            kind.lower(), load_any_structure(structure), code.lower(), protocol, charge,
            parse_sets(set_), _calc_dir(directory, kind.lower()), prev_dir, cell=cell, spin=spin,
            soc=soc, xc=None if xc is None else xc.lower(),
        )  # fmt: skip
        emit(summary(doc), as_json)

    @app.command("doctor")
    def doctor(as_json: JsonOpt = False) -> None:
        """Check executables, pseudopotentials, store, queue and ML potential; exit 1 on failure."""
        rows = run_checks(SEED_ELEMENTS)
        emit(rows, as_json, lambda r: table(r, ["check", "status", "detail", "fix"]))
        if any(r["status"] == "FAIL" for r in rows):
            raise typer.Exit(1)
