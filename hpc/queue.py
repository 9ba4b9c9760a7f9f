"""SLURM resources per code and the FireWorks queue launcher.

Queue configuration (YAML; ``settings.queue_file``, default ``<project_dir>/queue.yaml``)::

    adapter:                 # defaults for every job (FireWorks CommonAdapter keys)
      queue: debug           # SLURM partition
      nodes: 1
      ntasks: 1
      walltime: "00:30:00"
      pre_rocket: ""         # shell lines before every job (module load ..., source ...)
    njobs_queue: 20          # at most this many perovflow jobs queued/running at once
    codes:                   # per-code overrides: qe, cp2k, mlip, analysis
      qe:   {ntasks: 2, walltime: "02:00:00", mpi_prefix: "srun", modules: [qe/7.2]}
      cp2k: {ntasks: 2, mpi_prefix: "srun", env: {OMP_NUM_THREADS: "1"}}
      analysis: {ntasks: 1, walltime: "00:10:00"}

Each firework gets its own ``_queueadapter`` spec from ``adapter`` + ``codes.<code>``;
``mpi_prefix`` becomes ``PEROVFLOW_<CODE>__PARALLEL__MPI_PREFIX`` in the job, ``modules``
``module load`` lines, ``env`` quoted ``export`` lines. Resource values are checked against
a strict pattern so that nothing from a study or config reaches the batch script unquoted.
"""

from __future__ import annotations

import copy
import re
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perovflow.errors import InputError, QueueError

if TYPE_CHECKING:
    from fireworks import LaunchPad

    from perovflow.settings import Settings

CODES = ("qe", "cp2k", "mlip", "analysis")
DEFAULT_CONFIG: dict[str, Any] = {
    "adapter": {"queue": "debug", "nodes": 1, "ntasks": 1, "walltime": "01:00:00"},
    "njobs_queue": 20,
    "codes": {
        "qe": {"ntasks": 2, "walltime": "02:00:00"},
        "cp2k": {"ntasks": 2, "walltime": "02:00:00"},
        "mlip": {"ntasks": 1, "walltime": "01:00:00"},
        "analysis": {"ntasks": 1, "walltime": "00:20:00"},
    },
}
RESOURCE_KEYS = {
    "queue", "nodes", "ntasks", "ntasks_per_node", "cpus_per_task", "walltime", "mem",
    "mem_per_cpu", "account", "qos", "constraint", "gres", "exclude_nodes", "signal",
}  # fmt: skip
SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:,=@%/+-]{1,200}$")
SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TEMPLATE = Path(__file__).with_name("slurm_template.txt")


def queue_file(settings: Settings) -> Path:
    """Path of the queue configuration file."""
    if settings.queue_file:
        return settings.resolved(Path(settings.queue_file))
    return settings.resolved(Path(settings.project_dir)) / "queue.yaml"


def load_queue_config(settings: Settings) -> dict[str, Any]:
    """Read the queue configuration (defaults when the file does not exist).

    Raises
    ------
    InputError
        If the file is malformed, names an unknown code or key, or a value is unsafe.
    """
    import yaml

    from perovflow.engines.protocols import merge

    path = queue_file(settings)
    user: dict[str, Any] = {}
    if path.is_file():
        try:
            user = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(
                f"cannot parse {path}: {str(exc).splitlines()[0]}", "fix the YAML"
            ) from None
    unknown = set(user) - set(DEFAULT_CONFIG)
    if unknown:
        raise InputError(
            f"unknown key(s) {sorted(unknown)} in {path}", "use adapter, njobs_queue, codes"
        )
    config = merge(copy.deepcopy(DEFAULT_CONFIG), user)
    for code, block in {"adapter": config["adapter"], **config["codes"]}.items():
        if code != "adapter" and code not in CODES:
            raise InputError(f"unknown code '{code}' in {path}", f"use one of {', '.join(CODES)}")
        _check_block(block or {}, f"{path}: {code}")
    return config


def _check_block(block: dict[str, Any], where: str) -> None:
    for key, value in block.items():
        if key in RESOURCE_KEYS and not SAFE_VALUE.match(str(value)):
            raise InputError(
                f"unsafe value for {key} in {where}: {value!r}",
                "use letters, digits and . : , = @ % / + - only",
            )
        if key == "modules" and not all(SAFE_VALUE.match(str(m)) for m in value or []):
            raise InputError(f"unsafe module name in {where}", "list plain module names")
        if key == "env" and not all(SAFE_NAME.match(str(k)) for k in (value or {})):
            raise InputError(f"unsafe environment variable name in {where}", "use [A-Za-z_0-9]")
        if key not in RESOURCE_KEYS | {"modules", "env", "mpi_prefix", "pre_rocket"}:
            raise InputError(f"unknown key '{key}' in {where}", f"use {sorted(RESOURCE_KEYS)}")


def queue_spec(config: dict[str, Any], code: str) -> dict[str, Any]:
    """The ``_queueadapter`` spec of a firework running ``code``."""
    block = {**config["adapter"], **(config["codes"].get(code) or {})}
    spec = {k: v for k, v in block.items() if k in RESOURCE_KEYS}
    lines = str(config["adapter"].get("pre_rocket") or "").splitlines()
    lines += str((config["codes"].get(code) or {}).get("pre_rocket") or "").splitlines()
    lines += [f"module load {m}" for m in block.get("modules") or []]
    lines += [f"export {k}={shlex.quote(str(v))}" for k, v in (block.get("env") or {}).items()]
    if block.get("mpi_prefix") and code in {"qe", "cp2k"}:
        var = f"PEROVFLOW_{code.upper()}__PARALLEL__MPI_PREFIX"
        lines.append(f"export {var}={shlex.quote(str(block['mpi_prefix']))}")
    spec["pre_rocket"] = "\n".join(lines)
    return spec


def make_qadapter(settings: Settings, config: dict[str, Any] | None = None) -> Any:
    """A FireWorks SLURM ``CommonAdapter`` whose jobs run ``perovflow.hpc.rocket``."""
    from fireworks.user_objects.queue_adapters import common_adapter
    from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter
    from fireworks.utilities import fw_serializers

    # FireWorks copies the adapter with load_object(), which otherwise imports every module
    # of fireworks.user_objects (test modules included) to find the class.
    fw_serializers.SAVED_FW_MODULES[CommonAdapter._fw_name] = common_adapter.__name__
    from perovflow.hpc.launchpad import job_config_file

    config = config or load_queue_config(settings)
    cfg_file = job_config_file(settings)
    launch = " ".join(
        shlex.quote(x)
        for x in [sys.executable, "-m", "perovflow.hpc.rocket", "--config", str(cfg_file)]
    )
    base = queue_spec(config, "adapter")
    return CommonAdapter(
        q_type="SLURM",
        q_name="perovflow",
        template_file=str(TEMPLATE),
        rocket_launch=f"{launch} singleshot",
        **base,
    )


def launch(
    settings: Settings | None = None,
    launchpad: LaunchPad | None = None,
    max_jobs: int | None = None,
    nlaunches: int = 0,
    sleep_s: float = 30.0,
    timeout_s: float | None = None,
    progress: Callable[[int, str], None] | None = None,
) -> int:
    """Submit READY fireworks as SLURM jobs (FireWorks' queue launcher, reservation mode).

    ``progress(submitted, what)`` is called after each submission and while waiting.

    At most ``max_jobs`` (default ``njobs_queue``) perovflow jobs are queued at once; with
    ``nlaunches`` > 0 at most that many are submitted. It returns when nothing is ready and
    nothing can become ready (or after ``timeout_s``). Returns the number submitted.
    """
    import shutil

    from fireworks import FWorker

    from perovflow.hpc.fwfiles import write_fireworks_files
    from perovflow.hpc.launchpad import get_launchpad
    from perovflow.settings import get_settings

    settings = settings or get_settings()
    if not shutil.which("sbatch"):
        raise QueueError(
            "sbatch is not on PATH", "run on a SLURM login node (or scripts/slurm-up.sh)"
        )
    lp = launchpad or get_launchpad(settings)
    config = load_queue_config(settings)
    qadapter = make_qadapter(settings, config)
    write_fireworks_files(settings, qadapter)
    njobs = max_jobs if max_jobs is not None else int(config["njobs_queue"])
    base = settings.resolved(Path(settings.scratch_dir)) / "launches"
    base.mkdir(parents=True, exist_ok=True)
    blocks = sorted(base.glob("block_*"))
    block = blocks[-1] if blocks else _new_block(base)
    deadline = time.monotonic() + timeout_s if timeout_s else None
    launched = 0
    while True:
        queued = _queued(qadapter) if njobs else 0
        while lp.run_exists(FWorker()) and not _past(deadline) and not (njobs and queued >= njobs):
            if not _submit_one(lp, qadapter, block):
                break
            launched, queued = launched + 1, queued + 1
            if progress:
                progress(launched, "submitted")
            if nlaunches and launched >= nlaunches:
                return launched
        if _past(deadline) or not lp.future_run_exists(FWorker()):
            return launched
        if progress:
            progress(launched, f"waiting {sleep_s:g} s for queue space or ready fireworks")
        time.sleep(sleep_s)


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _new_block(base: Path) -> Path:
    from datetime import datetime

    block = base / datetime.now().strftime("block_%Y-%m-%d-%H-%M-%S-%f")
    block.mkdir(parents=True, exist_ok=True)
    return block


def _queued(qadapter: Any) -> int:
    n = qadapter.get_njobs_in_queue()
    if n is None:
        raise QueueError("squeue does not answer", "check the SLURM controller (sinfo)")
    return int(n)


def _submit_one(lp: LaunchPad, qadapter: Any, block: Path) -> bool:
    """Reserve one READY firework and sbatch it; False when none is ready."""
    from fireworks import FWorker
    from fireworks.queue.queue_launcher import launch_rocket_to_queue

    rc = launch_rocket_to_queue(
        lp, FWorker(), qadapter, str(block), reserve=True, strm_lvl="ERROR",
        create_launcher_dir=True,
    )  # fmt: skip
    if rc is False:
        raise QueueError(
            "sbatch failed (the firework was unreserved)",
            "check the queue settings (partition, walltime) and the controller (sinfo)",
        )
    return rc is not None
