"""Study files (YAML) -> validated :class:`Study` -> jobflow ``Flow``, and the ``plan``.

A study file names one study kind (``vacancy``, ``migration``, ``heterostructure``,
``composition``, ``rp_fault``), the structure, the protocol and code, and the section of
its kind. Unknown keys are errors (``extra="forbid"``), reported on one line. The engine
makers are built here from the registry with the user's ``settings`` on top (user wins).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from perovflow.errors import InputError

KINDS = ("vacancy", "migration", "heterostructure", "composition", "rp_fault", "ccd")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Substitution(_Model):
    """Replace ``count`` atoms of ``old`` by ``new`` (a symmetry-distinct arrangement)."""

    old: str = Field(alias="from", description="Element replaced.")
    new: str = Field(alias="to", description="Element put in.")
    count: int = Field(1, ge=1, description="How many atoms.")


class StructureSpec(_Model):
    """Where the structure comes from (prototype name or file) and how it is modified."""

    prototype: str | None = Field(None, description="Prototype name (perovflow structures list).")
    file: str | None = Field(None, description="Structure file (CIF, POSCAR, extxyz...).")
    cell: Literal["conventional", "primitive"] = Field("conventional", description="Cell choice.")
    supercell: str | None = Field(None, description="Supercell applied before substitutions.")
    substitute: list[Substitution] = Field(default_factory=list, description="Substitutions.")


class NEBSpec(_Model):
    """NEB settings; None means the protocol's ``neb`` block."""

    nimages: int | None = Field(None, ge=1, description="Intermediate images.")
    fmax: float | None = Field(None, gt=0, description="Force threshold (eV/Å).")
    interpolation: Literal["idpp", "linear"] = Field("idpp", description="Initial band.")
    method: Literal["accelerated", "plain"] = Field("accelerated", description="Procedure.")
    code: Literal["qe", "cp2k", "mlip"] | None = Field(
        None, description="Expensive code (default: study code)."
    )
    cheap_model: Literal["chgnet", "sevenn"] | None = Field(
        None, description="ML pre-convergence model."
    )
    charge: float = Field(0.0, description="Cell charge during the NEB (e).")
    window: int | None = Field(
        None, ge=0, description="Windowed mode: refine only the top image and k per side."
    )


class DielectricSpec(_Model):
    """Dielectric tensor of the host for the charged-defect corrections."""

    tensor: float | list[list[float]] = Field(
        description="Static dielectric constant: a scalar or the whole 3x3 tensor."
    )
    source: str = Field(description="Where it comes from (a paper, a DFPT run...).")

    @field_validator("tensor")
    @classmethod
    def _shape(cls, v: Any) -> Any:
        if isinstance(v, list) and (len(v) != 3 or any(len(r) != 3 for r in v)):
            raise ValueError("give a scalar or a 3x3 tensor")
        return v


class VacancySpec(_Model):
    """Vacancy study section."""

    elements: list[str] = Field(description="Elements to remove.")
    supercell: str | None = Field(None, description="Defect supercell of the bulk cell.")
    charge_states: dict[str, list[int]] = Field(
        default_factory=dict, description="Element -> charges."
    )
    competing_phases: list[str] = Field(
        default_factory=list,
        description="Prototype names or files, incl. every element (CsBr, Cs, Br2...).",
    )
    phase_settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="relax/static -> overrides for the competing phases (on top of settings, "
        "whose kpts are the supercell's and are not used for them).",
    )
    ipr_threshold: float | None = Field(
        None, gt=0, le=1, description="IPR above which a state is localized (None: max(0.03, 8/N))."
    )
    dielectric: DielectricSpec | None = Field(
        None, description="Dielectric tensor and its source (None: charged cells uncorrected)."
    )
    correction: Literal["auto", "freysoldt", "efnv", "none"] = Field(
        "auto", description="Charged-cell correction (auto: eFNV if ε is anisotropic)."
    )
    hybrid: dict[str, Any] | None = Field(
        None,
        description="Hybrid static of the bulk supercell and each defect cell on the PBE "
        "geometry, restarted from its PBE static (QE): xc (hse06|pbe0), soc, nqx, ecutfock_eV.",
    )


class MigrationSpec(_Model):
    """Migration study section."""

    vacancy_element: str = Field(description="Element whose site is vacant.")
    species: list[str] | None = Field(
        None, description="Elements allowed to hop (default: the vacancy's)."
    )
    supercell: str | None = Field(None, description="Supercell of the bulk cell.")
    hops: Literal["all", "seed"] | list[str] = Field(
        "all", description="all, the 4 seed paths, or labels."
    )
    relax_bulk: bool = Field(True, description="Relax the bulk cell first.")
    symmetric_ends: bool = Field(
        False,
        description="On a hop between symmetry-equivalent sites, relax only the initial end "
        "point and take the final one as its symmetry image (one relaxation saved).",
    )
    neb: NEBSpec = Field(default_factory=NEBSpec, description="NEB settings.")


class HeterostructureSpec(_Model):
    """Heterostructure study section."""

    builder: Literal["file", "interface", "nanocrystal", "half_sphere"] = Field(
        description="How to build it."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the builder."
    )
    ipr_threshold: float | None = Field(
        None, gt=0, le=1, description="IPR threshold (None: max(0.03, 8/N atoms))."
    )


class CompositionSpec(_Model):
    """Composition study section: mixed halides X(3-z)Y(z)."""

    host: str = Field(description="Halide replaced (I).")
    guest: str = Field(description="Halide put in (Br).")
    z: list[float] = Field(description="Guest per formula unit, e.g. [0, 0.5, 1, 3].")


class RPFaultSpec(_Model):
    """RP-fault study section."""

    options: dict[str, Any] = Field(default_factory=dict, description="rp_fault() arguments.")
    halide: str | None = Field(None, description="Vacancy element (default: heaviest halide).")
    neb: NEBSpec | None = Field(
        default_factory=NEBSpec, description="NEB across vs along (None: skip)."
    )
    md_temperature_K: float = Field(500.0, gt=0, description="ML MD temperature.")
    md_steps: int = Field(2000, ge=0, description="ML MD steps (0: skip).")
    md_timestep_fs: float = Field(2.0, gt=0, description="MD time step.")


class CCDSpec(_Model):
    """Configuration-coordinate diagram section (:mod:`perovflow.workflows.ccd`)."""

    vacancy_element: str = Field(description="Element whose first distinct site is removed.")
    supercell: str | None = Field(None, description="Defect supercell of the cell.")
    charge_states: list[int] = Field(
        description="The two charge states, e.g. [1, 0].", min_length=2, max_length=2
    )
    distortions: list[float] = Field(
        [-0.2, -0.1, 0.0, 0.1, 0.2, 1.0], description="Fractions of ΔQ (need 0 and 1)."
    )
    reservoir: Literal["vbm", "cbm"] | float = Field("vbm", description="Electron reservoir.")


class Study(_Model):
    """One study file."""

    study: Literal["vacancy", "migration", "heterostructure", "composition", "rp_fault", "ccd"]
    name: str = Field(description="Study name (labels every task document).")
    description: str = Field("", description="Free text.")
    protocol: Literal["fast", "standard", "seed"] = Field("fast", description="Protocol.")
    code: Literal["qe", "cp2k", "mlip"] = Field("qe", description="Code of the DFT steps.")
    prerelax: Literal["mlip"] | None = Field("mlip", description="ML pre-relaxation (null: none).")
    relax: bool = Field(
        True, description="Relax with the study code (false: the ML pre-relaxation only)."
    )
    structure: StructureSpec = Field(default_factory=StructureSpec, description="Structure.")
    settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-step user settings: relax/static/bands/dos -> overrides.",
    )
    vacancy: VacancySpec | None = None
    migration: MigrationSpec | None = None
    heterostructure: HeterostructureSpec | None = None
    composition: CompositionSpec | None = None
    rp_fault: RPFaultSpec | None = None
    ccd: CCDSpec | None = None

    def section(self) -> Any:
        """The section of this study's kind (an error if it is missing)."""
        value = getattr(self, self.study)
        if value is None:
            raise InputError(
                f"study '{self.name}' has no '{self.study}:' section", f"add a {self.study}: block"
            )
        return value


def load_study(path: str | Path) -> Study:
    """Read and validate a study file; every problem is one :class:`InputError` line."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"study file {path} does not exist", "give the path of a studies/*.yaml file"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(
            f"{path} is not valid YAML: {str(exc).splitlines()[0]}", "fix the YAML syntax"
        ) from None
    if not isinstance(data, dict):
        raise InputError(f"{path} holds no mapping", "start the file with 'study: <kind>'")
    try:
        study = Study.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "file"
        raise InputError(
            f"{path.name}: '{where}': {err.get('msg', 'invalid')}",
            "see studies/*.yaml for valid keys",
        ) from None
    study.section()
    return study


def makers(study: Study) -> dict[str, Any]:
    """Engine makers of the study: relax/static/dos/bands with the user's settings on top."""
    from perovflow.workflows.common import engine_maker

    def get(kind: str, code: str | None = None) -> Any:
        code = code or study.code
        try:
            return engine_maker(code, kind, study.protocol, study.settings.get(kind))
        except InputError:
            if code == study.code and kind in ("dos", "bands"):
                return None  # the code has no such step (e.g. an ML potential)
            raise

    out = {"relax": get("relax") if study.relax else None}
    out["static"] = None if study.code == "mlip" else get("static")
    out["dos"] = None if study.code == "mlip" else get("dos")
    out["bands"] = None if study.code == "mlip" else get("bands")
    out["static"], out["dos"] = pdos_on_the_scf(out["static"], out["dos"], study.settings)
    out["prerelax"] = engine_maker("mlip", "relax", study.protocol, study.settings.get("prerelax")) if (
        study.prerelax and study.code != "mlip") else None  # fmt: skip
    return out


def pdos_on_the_scf(static: Any, dos: Any, settings: dict[str, Any]) -> tuple[Any, Any]:
    """(static, dos) makers, the DOS step folded into the scf where it would repeat it.

    A DOS step given the same settings as the static, an explicit k grid included, would
    diagonalise the scf's Hamiltonian again at the scf's own k-points. The static then
    projects its own states instead (a maker with a ``projwfc`` switch, e.g. QE's; what
    :class:`~perovflow.engines.qe.jobs.QEStaticPdosMaker` does) and the DOS step is dropped:
    one run less per cell, the same projections. Any other DOS settings are kept as given.
    """
    from perovflow.workflows.common import with_fields

    mine = settings.get("dos")
    if static is None or dos is None or not mine or "kpts" not in mine:
        return static, dos
    if mine != settings.get("static") or not hasattr(static, "projwfc"):
        return static, dos
    return with_fields(static, projwfc=True), None


def structure_of(study: Study) -> Any:
    """The input structure: prototype or file, supercell, substitutions."""
    spec = study.structure
    if spec.prototype and spec.file:
        raise InputError("structure has both prototype and file", "keep one of them")
    if not (spec.prototype or spec.file):
        return None
    from perovflow.structures.io import load_structure

    source = spec.file if spec.file else spec.prototype
    structure = load_structure(source, cell=spec.cell)
    if spec.supercell:
        from perovflow.structures.supercells import make_supercell

        structure = make_supercell(structure, spec.supercell)
    for sub in spec.substitute:
        from perovflow.structures.variants import substitute

        structure = substitute(structure, sub.old, sub.new, sub.count).structure
    return structure


def build_flow(
    path_or_study: str | Path | Study, engine_makers: dict[str, Any] | None = None
) -> Any:
    """jobflow ``Flow`` of a study file (or :class:`Study`).

    ``engine_makers`` replaces the study's makers by role (``relax``, ``static``, ``dos``,
    ``bands``, ``prerelax``): any Maker with ``make(structure, prev_dir=None)`` and a
    ``.structure`` on its output, e.g. atomate2's ``ForceFieldRelaxMaker`` as the pre-relax.
    """
    import importlib

    study = path_or_study if isinstance(path_or_study, Study) else load_study(path_or_study)
    module = importlib.import_module(f"perovflow.workflows.{study.study}")
    chosen = {**makers(study), **(engine_makers or {})}
    flow = module.flow_from_study(study, chosen, structure_of(study))
    flow.name = study.name
    return flow


def plan(study: Study | str | Path) -> dict[str, Any]:
    """Job graph, DFT calculations by kind, and what symmetry reduction saved (nothing runs)."""
    from perovflow.workflows.planning import describe

    study = study if isinstance(study, Study) else load_study(study)
    return describe(study, build_flow(study))
