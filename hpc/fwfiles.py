"""FireWorks' own tools on the project's LaunchPad: config files and ``perovflow lpad``.

``write_fireworks_files(settings=None, qadapter=None) -> Path``
    Writes ``<project_dir>/fireworks/``: ``FW_config.yaml`` (``CONFIG_FILE_DIR`` = that
    folder), ``my_fworker.yaml``, ``my_qadapter.yaml`` (perovflow's SLURM template and
    batch-job command; per-firework resources apply with ``qlaunch -r``) and, with
    ``store.uri`` set, ``my_launchpad.yaml`` (it holds the URI: mode 0600). With
    ``export FW_CONFIG_FILE=<project_dir>/fireworks/FW_config.yaml`` FireWorks' ``lpad``
    and ``qlaunch`` act on the project's LaunchPad and queue settings.
``run_lpad(argv, settings=None) -> int``
    FireWorks' ``lpad`` command (every subcommand) on the project's LaunchPad, MongoDB or
    embedded. MongoDB goes through ``lpad -l my_launchpad.yaml``, FireWorks' own route. For
    the embedded store no public argument reaches it: ``lpad`` builds its LaunchPad in
    ``fireworks.scripts.lpad_run.get_lp`` with ``LaunchPad.from_file`` (or ``LaunchPad()``),
    and ``LaunchPad.from_dict`` returns a plain ``LaunchPad`` (not ``cls``) that opens a
    pymongo client, so neither a LaunchPad subclass nor a yaml file can name the embedded
    database. ``get_lp`` is the one seam ``lpad_run`` has (every subcommand calls it), so for
    the call it is pointed at the already built
    :class:`~perovflow.hpc.embedded_lp.EmbeddedLaunchPad` (a public LaunchPad subclass) and
    restored afterwards, even on error; the CLI runs one ``lpad`` per process. No mocking
    library is involved.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perovflow.settings import Settings


def fireworks_dir(settings: Settings) -> Path:
    """Folder of the FireWorks config files."""
    return settings.resolved(Path(settings.project_dir)) / "fireworks"


def write_fireworks_files(settings: Settings | None = None, qadapter: Any = None) -> Path:
    """Write the FireWorks config files (see the module docstring); returns their folder."""
    import yaml

    from perovflow.hpc.launchpad import FW_LOGLEVEL, write_private
    from perovflow.hpc.queue import make_qadapter
    from perovflow.settings import get_settings

    settings = settings or get_settings()
    folder = fireworks_dir(settings)
    qadapter = qadapter if qadapter is not None else make_qadapter(settings)
    qa = {k: v for k, v in qadapter.to_dict().items() if v is not None}
    files = {
        "FW_config.yaml": {"CONFIG_FILE_DIR": str(folder), "QUEUE_UPDATE_INTERVAL": 2},
        "my_fworker.yaml": {"name": "perovflow", "category": "", "query": "{}"},
        "my_qadapter.yaml": qa,
    }
    if settings.store.uri:
        from perovflow.hpc.store import SERVER_TIMEOUT_MS

        files["my_launchpad.yaml"] = {
            "host": settings.store.uri,
            "uri_mode": True,
            "name": f"{settings.store.database}_fw",
            "strm_lvl": FW_LOGLEVEL,
            "mongoclient_kwargs": {"serverSelectionTimeoutMS": SERVER_TIMEOUT_MS},
        }
    else:  # no stale file pointing lpad at an old MongoDB
        (folder / "my_launchpad.yaml").unlink(missing_ok=True)
    for name, data in files.items():
        write_private(folder / name, yaml.safe_dump(data, sort_keys=True))
    return folder


def run_lpad(argv: list[str], settings: Settings | None = None) -> int:
    """Run FireWorks' ``lpad`` with ``argv`` on the project's LaunchPad; its exit code."""
    from fireworks.scripts import lpad_run

    from perovflow.hpc.launchpad import get_launchpad
    from perovflow.settings import get_settings

    settings = settings or get_settings()
    lp = get_launchpad(settings)
    folder = write_fireworks_files(settings)
    if settings.store.uri:
        return int(lpad_run.lpad(["-l", str(folder / "my_launchpad.yaml"), *argv]) or 0)
    factory = lpad_run.get_lp
    lpad_run.get_lp = lambda args: lp
    try:
        return int(lpad_run.lpad(list(argv)) or 0)
    finally:
        lpad_run.get_lp = factory
