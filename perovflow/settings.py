"""The one settings object, read at run time.

Sources, highest priority first:

1. keyword arguments to :func:`get_settings` (used by tests and the Python API),
2. environment variables ``PEROVFLOW_*`` (nested with ``__``, e.g. ``PEROVFLOW_QE__PW_CMD``),
3. the YAML file named by ``PEROVFLOW_CONFIG_FILE`` (default ``~/.perovflow/config.yaml``),
4. the defaults below.

Unknown keys are rejected (``extra="forbid"``) so that a typo never silently does nothing.
Nothing here is read at import time: call :func:`get_settings` where the value is used.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from perovflow.errors import InputError

DEFAULT_HOME = Path("~/.perovflow")


def config_file() -> Path:
    """Return the YAML settings file path (it need not exist)."""
    return Path(
        os.environ.get("PEROVFLOW_CONFIG_FILE", str(DEFAULT_HOME / "config.yaml"))
    ).expanduser()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParallelSettings(_Section):
    """How a parallel code is launched (ASE genericfileio profile parts)."""

    mpi_prefix: str | None = Field(
        None,
        description="Prefix before a parallel binary, e.g. 'mpirun -np 2' or 'srun'. None "
        "(default): 'mpirun -np N' with N the SLURM allocation's tasks, or locally the cores this "
        "process may use; '' runs the bare binary.",
    )
    launcher: Literal["auto", "mpirun", "srun"] = Field(
        "auto",
        description="Launcher of the automatic prefix: srun needs an MPI built with SLURM's PMI.",
    )
    ranks: int | None = Field(
        None, ge=1, description="MPI ranks of the automatic prefix (None: all cores / tasks)."
    )
    mpi_suffix: str = Field(
        "", description="Extra arguments after the binary, e.g. '-nk 2' for pw.x pools."
    )
    omp_threads: int = Field(1, ge=1, description="OMP_NUM_THREADS exported to parallel codes.")

    def prefix(self) -> list[str]:
        """The launch prefix: the user's ``mpi_prefix``, or the automatic one when unset."""
        if self.mpi_prefix is None:
            from perovflow.launch import auto_prefix

            return auto_prefix(self.ranks, self.omp_threads, launcher=self.launcher)
        return shlex.split(self.mpi_prefix)

    def command(self, binary: str) -> list[str]:
        """Return the argv that launches ``binary`` under this parallel setup.

        Raises
        ------
        EngineError
            If ``binary`` is not an executable (name on PATH or path).
        """
        from perovflow.launch import require_executable

        require_executable(binary)
        return [*self.prefix(), *shlex.split(binary), *shlex.split(self.mpi_suffix)]


class QESettings(_Section):
    """Quantum ESPRESSO executables and pseudopotentials."""

    pw_cmd: str = Field("pw.x", description="pw.x executable (name on PATH or absolute path).")
    projwfc_cmd: str = Field("projwfc.x", description="projwfc.x executable.")
    neb_cmd: str = Field("neb.x", description="neb.x executable.")
    ph_cmd: str = Field("ph.x", description="ph.x executable (dielectric tensors, Γ phonons).")
    dynmat_cmd: str = Field(
        "dynmat.x", description="dynmat.x executable (the independent ε0 cross-check; serial)."
    )
    pp_cmd: str = Field(
        "pp.x", description="pp.x executable (electrostatic potential for corrections)."
    )
    pseudo_dir: Path | None = Field(
        None,
        description="Folder of UPF pseudopotentials (SSSP, GBRV, pslibrary...). None uses the embedded "
        "GTH-PBE family converted from cp2k-data.",
    )
    pseudo_family: str = Field(
        "gth-pbe", description="Name recorded for the pseudopotential family."
    )
    npool: int | None = Field(
        None, ge=1, description="pw.x -nk pools; None chooses from k-points and ranks."
    )
    parallel: ParallelSettings | None = Field(
        None, description="Overrides the global parallel settings for QE."
    )


class CP2KSettings(_Section):
    """CP2K executable and data files."""

    cmd: str = Field("cp2k.psmp", description="CP2K executable.")
    shell_cmd: str = Field(
        "cp2k_shell.psmp", description="cp2k_shell executable (ASE's CP2K calculator)."
    )
    data_dir: Path = Field(
        Path("/usr/share/cp2k"), description="Folder with BASIS_MOLOPT and GTH_POTENTIALS."
    )
    basis_file: str = Field(
        "BASIS_MOLOPT", description="Basis-set file inside data_dir (or absolute)."
    )
    potential_file: str = Field(
        "GTH_POTENTIALS", description="Pseudopotential file inside data_dir (or absolute)."
    )
    parallel: ParallelSettings | None = Field(
        None, description="Overrides the global parallel settings for CP2K."
    )


class MLIPSettings(_Section):
    """Machine-learned interatomic potential used for pre-relaxation and NEB pre-convergence."""

    model: Literal["chgnet", "sevenn"] = Field(
        "chgnet", description="Which packaged pretrained model to use."
    )
    device: str = Field("cpu", description="torch device.")


class StoreSettings(_Section):
    """Where results live."""

    uri: str | None = Field(
        None,
        description="MongoDB URI (mongodb://...). None uses the embedded store in project_dir/store.",
        repr=False,
    )
    database: str = Field("perovflow", description="Database name on the MongoDB server.")
    collection: str = Field("outputs", description="Collection holding task documents.")


class Settings(BaseSettings):
    """All perovflow settings. See the module docstring for where values come from."""

    model_config = SettingsConfigDict(
        env_prefix="PEROVFLOW_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    project_dir: Path = Field(
        DEFAULT_HOME / "project", description="Embedded store, launchpad and reports."
    )
    scratch_dir: Path = Field(DEFAULT_HOME / "scratch", description="Where calculations run.")
    protocol: Literal["fast", "standard", "seed"] = Field(
        "standard", description="Default protocol."
    )
    parallel: ParallelSettings = Field(
        default_factory=ParallelSettings, description="Default launch setup."
    )
    qe: QESettings = Field(default_factory=QESettings, description="Quantum ESPRESSO.")
    cp2k: CP2KSettings = Field(default_factory=CP2KSettings, description="CP2K.")
    mlip: MLIPSettings = Field(default_factory=MLIPSettings, description="ML potential.")
    store: StoreSettings = Field(default_factory=StoreSettings, description="Results store.")
    queue_file: Path | None = Field(None, description="YAML with per-code SLURM resources (hpc).")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order the sources: init > env > YAML file > defaults."""
        return (
            init_settings,
            env_settings,
            YamlConfigSettingsSource(settings_cls, yaml_file=config_file()),
        )

    def parallel_for(self, code: Literal["qe", "cp2k"]) -> ParallelSettings:
        """Return the launch setup of ``code`` (its own section wins over the global one)."""
        own = getattr(self, code).parallel
        return own if own is not None else self.parallel

    def resolved(self, path: Path) -> Path:
        """Expand ``~`` and make ``path`` absolute."""
        return Path(path).expanduser().resolve()


def get_settings(**overrides: Any) -> Settings:
    """Read the settings now (environment and YAML file are read on every call).

    Raises
    ------
    InputError
        If the YAML file or an environment variable holds an unknown or invalid key.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        raise InputError(
            f"invalid setting '{where}': {err.get('msg', 'invalid')}",
            f"correct it in {config_file()} or the PEROVFLOW_* environment variables",
        ) from None
    except Exception as exc:  # malformed YAML
        raise InputError(
            f"cannot read settings file {config_file()}: {str(exc).splitlines()[0]}",
            "fix the YAML syntax or point PEROVFLOW_CONFIG_FILE elsewhere",
        ) from None
