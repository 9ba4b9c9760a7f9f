"""MigrationStudy: vacancy-mediated hops, NEB pre-converged with the ML potential, barrier table.

Seeds: the four paths of seed 004 in the 80-atom Cs2Na0.875Ag0.125BiCl6 cell (Na -> V_Na,
Ag -> V_Na, Cl from Na–Cl and from Ag–Cl octahedra -> V_Cl), the Cl hop in Cs2NaBiCl6 and
the V_Br hop in Cs4PbBr6.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jobflow import Flow, Maker, job

from perovflow.analysis.neb_result import EV_TO_KCAL_MOL
from perovflow.workflows.common import (
    as_structure,
    hop_endpoints_job,
    make_supercell_job,
    relax_chain,
    tag,
    with_fields,
)


@dataclass
class NEBMaker(Maker):
    """CI-NEB between two relaxed end points with any engine's ASE calculator.

    Steps of ``make``: end-point energies and forces (expensive calculator) -> interpolation
    (IDPP by default) -> ``accelerated``: band converged with the ML potential, then the whole
    band converged on the expensive surface through the Δ-model surrogate (see
    :mod:`perovflow.workflows.neb`); ``plain``: CI-NEB from scratch with the expensive
    calculator -> barrier from the climbing image, spline profile, convergence and cost.

    Attributes
    ----------
    code
        Engine of the expensive calculator: ``qe``, ``cp2k`` or ``mlip``.
    protocol, input_set_overrides, charge
        Engine settings (user overrides win over the protocol).
    nimages, fmax
        Intermediate images and force threshold (eV/Å); None: the protocol's ``neb`` block.
    method
        ``accelerated`` (default) or ``plain``.
    cheap_model
        ML potential for the pre-convergence (``chgnet`` or ``sevenn``).
    window
        None (default): the whole band is converged with the expensive calculator. An
        integer k: the windowed mode (only the highest image and k neighbours per side; the
        barrier from those; ``converged`` stays the whole-band test).
    """

    name: str = "neb"
    code: str = "mlip"
    protocol: str | None = None
    input_set_overrides: dict[str, Any] = field(default_factory=dict)
    charge: float = 0.0
    nimages: int | None = None
    fmax: float | None = None
    interpolation: Literal["idpp", "linear"] = "idpp"
    method: Literal["accelerated", "plain"] = "accelerated"
    cheap_model: str | None = None
    expensive_model: str | None = None
    max_steps: int = 500
    window: int | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    calc_type = "neb"

    def settings(self) -> dict[str, Any]:
        """Protocol ``neb`` block with this maker's values on top."""
        from perovflow.engines.protocols import get_protocol
        from perovflow.settings import get_settings

        protocol = self.protocol or get_settings().protocol
        neb = get_protocol(protocol, None)["neb"]
        return {
            "protocol": protocol,
            "nimages": self.nimages or neb["nimages"],
            "fmax": self.fmax or neb["fmax"],
        }

    @job(data=["images"])
    def make(self, initial: Any, final: Any) -> dict[str, Any]:
        """Run the NEB between ``initial`` and ``final`` (same atoms, same order)."""
        return run_neb(self, initial, final, Path.cwd())


def run_neb(maker: NEBMaker, initial: Any, final: Any, directory: Path) -> dict[str, Any]:
    """Everything :meth:`NEBMaker.make` does; returns summary, analysis and images."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.workflows.calculators import calculator_factory, mlip_calculator
    from perovflow.workflows.neb import accelerated_neb, plain_neb

    cfg = maker.settings()
    a, b = (AseAtomsAdaptor.get_atoms(as_structure(s)) for s in (initial, final))
    expensive = calculator_factory(
        maker.code, directory, cfg["protocol"], maker.input_set_overrides, maker.charge,
        model=maker.expensive_model,
    )  # fmt: skip
    common = {"nimages": cfg["nimages"], "fmax": cfg["fmax"], "relax_endpoints": False}
    if maker.method == "plain":
        result = plain_neb(
            a, b, expensive, steps=maker.max_steps, interpolation=maker.interpolation, **common
        )
    else:
        cheap = mlip_calculator(maker.cheap_model)
        result = accelerated_neb(
            a, b, expensive, cheap, interpolation=maker.interpolation, window=maker.window,
            **common,
        )  # fmt: skip
    images = [
        {"numbers": im.numbers.tolist(), "positions": im.positions.tolist(),
         "cell": im.cell[:].tolist(), "pbc": im.pbc.tolist(),
         "energy": float(im.get_potential_energy()), "forces": im.get_forces().tolist()}
        for im in result.images
    ]  # fmt: skip
    summary = result.summary()
    summary["endpoint_max_force_eV_A"] = result.meta.get("endpoint_max_force_eV_A")
    return {
        "result_type": "neb",
        "code": maker.code,
        "labels": dict(maker.labels),
        "summary": summary,
        "profile": {k: v for k, v in result.to_dict().items() if k not in summary},
        "images": images,
    }


@dataclass
class MigrationFlowMaker(Maker):
    """Migration study (code-agnostic).

    Steps: (1) relax the bulk cell (optional ML pre-relax, then ``relax_maker``);
    (2) supercell; (3) enumerate the symmetry-distinct hops into the vacancy (all, the four
    seed-004 paths, or chosen labels); (4) per hop: end points (host minus the vacant
    ion; the moving ion on the vacant site), relax both (initial states shared by hops into
    the same vacancy; with ``symmetric_ends``, on a hop between equivalent sites the final
    one is the relaxed initial one's symmetry image instead); (5) NEB per hop with ``neb_maker`` (interpolation, ML pre-convergence,
    CI-NEB with the expensive code); (6) barrier table in eV and kcal/mol.
    """

    name: str = "migration study"
    relax_maker: Maker | None = None
    prerelax_maker: Maker | None = None
    neb_maker: NEBMaker = field(default_factory=NEBMaker)
    supercell: str | None = None
    vacancy_element: str = "Cl"
    species: list[str] | None = None
    hops: str | list[str] = "all"
    relax_bulk: bool = True
    symmetric_ends: bool = False

    def select_hops(self, structure: Any) -> tuple[list[Any], int]:
        """(chosen symmetry-distinct hops, number of hops they stand for)."""
        from perovflow.structures.paths import enumerate_hops, seed_hops
        from perovflow.structures.supercells import make_supercell

        cell = as_structure(structure)
        cell = make_supercell(cell, self.supercell) if self.supercell else cell
        if self.hops == "seed":
            chosen = seed_hops(cell, anion=self.vacancy_element)
        else:
            chosen = enumerate_hops(cell, self.vacancy_element, species=self.species)
            if self.hops != "all":
                chosen = [h for h in chosen if h.label in self.hops]
        return chosen, sum(h.multiplicity for h in chosen)

    def make(self, structure: Any) -> Flow:
        """Build the flow for ``structure`` (the bulk unit cell, before the supercell)."""
        labels = {"study": self.name}
        jobs: list = []
        bulk = structure
        if self.relax_bulk:
            jobs, bulk = relax_chain(
                structure, self.relax_maker, self.prerelax_maker, "bulk", labels, cell=True
            )
        sc = make_supercell_job(bulk, self.supercell)
        sc.name = "supercell"
        jobs.append(sc)
        initial_by_vacancy: dict[int, tuple[Any, Any]] = {}
        nebs, relaxed = [], []
        relax = None if self.relax_maker is None else with_fields(self.relax_maker, defect=True)
        hops = self.select_hops(structure)[0]
        symmetric = _symmetric_hops(structure, self.supercell, hops) if self.symmetric_ends else []
        for n, hop in enumerate(hops, start=1):
            lab = {**labels, "hop": hop.label, "path": n}
            ends = hop_endpoints_job(sc.output, hop.to_dict())
            ends.name = f"path {n} endpoints"
            jobs.append(ends)
            if hop.vacancy_index not in initial_by_vacancy:
                chain, init = relax_chain(ends.output["initial"], relax, self.prerelax_maker,
                                          f"V{hop.vacancy_index} initial", lab)  # fmt: skip
                jobs += chain
                initial_by_vacancy[hop.vacancy_index] = (init, _relax_converged(chain, relax))
            init, init_ok = initial_by_vacancy[hop.vacancy_index]
            if symmetric and relax is not None and symmetric[n - 1]:
                mapped = mapped_final_job(init, ends.output)
                mapped.name = f"path {n} final (symmetry image)"
                chain, fin, fin_ok = [mapped], mapped.output, init_ok
            else:
                chain, fin = relax_chain(
                    ends.output["final"], relax, self.prerelax_maker, f"path {n} final", lab
                )
                fin_ok = _relax_converged(chain, relax)
            relaxed.append([init_ok, fin_ok])
            neb_maker = with_fields(
                self.neb_maker, name=f"path {n} neb", labels={**lab, **hop.to_dict()}
            )
            neb = tag(neb_maker.make(init, fin),
                      code=neb_maker.code, kind="neb", images=neb_maker.settings()["nimages"])  # fmt: skip
            jobs += [*chain, neb]
            nebs.append(neb.output)
        table = barrier_table(nebs, relaxed)
        table.name = "barrier table"
        return Flow([*jobs, table], output=table.output, name=self.name)


def _symmetric_hops(structure: Any, supercell: str | None, hops: list[Any]) -> list[bool]:
    """Per hop, whether a host operation carries its initial end point onto its final one
    (decided on the unrelaxed cell; a symmetry-preserving bulk relaxation keeps it)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.structures.endpoint_symmetry import endpoint_map
    from perovflow.structures.paths import hop_endpoints
    from perovflow.structures.supercells import make_supercell

    cell = as_structure(structure)
    cell = make_supercell(cell, supercell) if supercell else cell
    ends = ([AseAtomsAdaptor.get_atoms(s) for s in hop_endpoints(cell, hop)] for hop in hops)
    return [endpoint_map(*pair) is not None for pair in ends]


@job
def mapped_final_job(relaxed_initial: Any, ends: dict[str, Any]) -> Any:
    """The final end point as the symmetry image of the relaxed initial one (positions)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.structures.endpoint_symmetry import endpoint_map, map_positions

    initial, final = (
        AseAtomsAdaptor.get_atoms(as_structure(ends[k])) for k in ("initial", "final")
    )
    op = endpoint_map(initial, final, tol=1e-2)
    if op is None:
        raise ValueError("the hop's end points are no longer symmetry-equivalent after the bulk "
                         "relaxation (fix: symmetric_ends: false in the study)")  # fmt: skip
    relaxed = AseAtomsAdaptor.get_atoms(as_structure(relaxed_initial))
    return AseAtomsAdaptor.get_structure(map_positions(relaxed, op, final))


def _relax_converged(chain: list, relax: Maker | None) -> Any:
    """Reference to the relax job's own ``converged`` flag (None: the flow did not relax)."""
    return chain[-1].output.converged if relax is not None and chain else None


@job
def barrier_table(
    nebs: list[dict[str, Any]], relaxed: list[list[bool | None]] | None = None
) -> dict[str, Any]:
    """One row per hop: barrier (eV, kcal/mol), reverse barrier, reaction energy, cost and
    the end points' relaxation status (``relaxed``: per hop, the initial and final relax
    jobs' ``converged`` flags; None where the flow did not relax them)."""
    rows = []
    for n, out in enumerate(nebs, start=1):
        lab, summ = out["labels"], out["summary"]
        relax = relaxed[n - 1] if relaxed and n <= len(relaxed) else [None, None]
        forces_ok = summ.get("endpoints_converged") or [None, None]
        rows.append({
            "path": lab.get("path", n), "label": lab.get("label", lab.get("hop")),
            "moving": lab.get("moving_element"), "from": lab.get("environment_left"),
            "length_A": round(lab.get("length", 0.0), 3), "multiplicity": lab.get("multiplicity"),
            "barrier_eV": round(summ["barrier_forward_eV"], 4),
            "barrier_kcal_mol": round(summ["barrier_forward_eV"] * EV_TO_KCAL_MOL, 2),
            "reverse_eV": round(summ["barrier_backward_eV"], 4),
            "reaction_eV": round(summ["reaction_energy_eV"], 4),
            "dft_calls": summ["expensive_calls"], "converged": summ["converged"],
            "endpoints_converged": summ.get("endpoints_converged"),
            "endpoints_relax_converged": relax,
            "endpoints_relaxed": _relaxed(relax, forces_ok),
            "refined_images": summ.get("refined_images"),
        })  # fmt: skip
    return {"result_type": "barriers", "rows": rows}


def _relaxed(relax: list[bool | None], forces_ok: list[bool | None]) -> str:
    """Initial/final relaxation status as one table cell (``yes/yes``, ``yes/no``, ``?/?``):
    "yes" when the relax job converged (or the flow did not relax it) and the end point's
    expensive forces in the NEB are below ``fmax``; "?" when neither is known."""
    cells = []
    for job_ok, force_ok in zip(relax, forces_ok, strict=True):
        known = [v for v in (job_ok, force_ok) if v is not None]
        cells.append("?" if not known else ("yes" if all(known) else "no"))
    return "/".join(cells)


def flow_from_study(study: Any, makers: dict[str, Any], structure: Any) -> Flow:
    """Migration flow of a study file (see :class:`MigrationFlowMaker` for the steps)."""
    spec = study.section()
    neb = NEBMaker(
        code=spec.neb.code or study.code, protocol=study.protocol,
        input_set_overrides=dict(study.settings.get("neb", study.settings.get("static", {}))),
        charge=spec.neb.charge, nimages=spec.neb.nimages, fmax=spec.neb.fmax,
        interpolation=spec.neb.interpolation, method=spec.neb.method, cheap_model=spec.neb.cheap_model,
        window=spec.neb.window,
    )  # fmt: skip
    maker = MigrationFlowMaker(
        name=study.name, relax_maker=makers["relax"], prerelax_maker=makers["prerelax"],
        neb_maker=neb, supercell=spec.supercell, vacancy_element=spec.vacancy_element,
        species=spec.species, hops=spec.hops, relax_bulk=spec.relax_bulk,
        symmetric_ends=spec.symmetric_ends,
    )  # fmt: skip
    flow = maker.make(structure)
    hops, _ = maker.select_hops(structure)
    orbit = _orbit_sizes(structure, maker.supercell)
    flow.metadata = {**(flow.metadata or {}), "symmetry": {
        "unit": "hops", "items_distinct": len(hops),
        "items_total": sum(h.multiplicity * orbit.get(h.vacancy_index, 1) for h in hops),
        "calcs_per_item": 3}}  # fmt: skip
    return flow


def _orbit_sizes(structure: Any, supercell: str | None) -> dict[int, int]:
    """Site index -> size of its symmetry orbit (how many equivalent vacant sites)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from perovflow.structures.supercells import make_supercell

    cell = as_structure(structure)
    cell = make_supercell(cell, supercell) if supercell else cell
    groups = SpacegroupAnalyzer(cell, symprec=0.01).get_symmetrized_structure().equivalent_indices
    return {i: len(g) for g in groups for i in g}


# The table ``perovflow run`` prints: ``endpoints_relaxed`` is initial/final, each "yes" when
# the end point's relax job converged and its expensive forces in the NEB are below fmax.
BARRIER_COLUMNS = ["path", "moving", "from", "barrier_eV", "barrier_kcal_mol", "dft_calls",
                   "converged", "endpoints_relaxed"]  # fmt: skip


def study_barriers(flow: Flow, store: Any) -> list[dict[str, Any]] | None:
    """Rows of a finished migration flow's barrier table (None for another kind of flow)."""
    store.connect()
    uuid = getattr(flow.output, "uuid", None)
    try:
        out = store.get_output(uuid, load=True) if uuid else None
    except ValueError:  # the last job did not finish
        return None
    return out["rows"] if isinstance(out, dict) and out.get("result_type") == "barriers" else None
