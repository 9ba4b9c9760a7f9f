"""RPFaultStudy: does a halide vacancy cross a Ruddlesden–Popper fault?

Seed 003: halide vacancy near an RP fault vs in the bulk grain, NEB across vs along the
fault, ML-potential MD at 500 K with the vacancy followed frame by frame.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from jobflow import Flow, Maker, job

from perovflow.workflows.common import (
    as_structure,
    hop_endpoints_job,
    relax_chain,
    tag,
    with_fields,
)
from perovflow.workflows.vacancy import _doc


def vacancy_track(host: Any, frames: list[np.ndarray], element: str) -> list[dict[str, Any]]:
    """Per frame, the empty ``element`` site of ``host`` (the perfect cell) and its domain.

    Each frame's ``element`` atoms are matched to the host's sites by minimum-image distance;
    the site farthest from every atom is the vacancy.
    """
    host = as_structure(host)
    sites = [i for i, s in enumerate(host) if s.specie.symbol == element]
    ref = host.frac_coords[sites]
    domains = host.site_properties.get("domain", [None] * len(host))
    lat = host.lattice
    out = []
    for n, frac_atoms in enumerate(frames):
        dist = lat.get_all_distances(ref, frac_atoms)
        empty = int(np.argmax(dist.min(axis=1)))
        site = sites[empty]
        out.append({"frame": n, "site": site, "domain": domains[site],
                    "z_A": float(host[site].coords[2]), "gap_A": float(dist.min(axis=1)[empty])})  # fmt: skip
    return out


def crossings(track: list[dict[str, Any]]) -> int:
    """How many times the vacancy changed domain (grain) along the trajectory."""
    return sum(1 for a, b in itertools.pairwise(track) if a["domain"] != b["domain"])


@job(data=["frames"])
def md_vacancy_job(
    structure: Any, host: Any, element: str, temperature_K: float = 500.0, steps: int = 2000,
    timestep_fs: float = 2.0, every: int = 10, model: str | None = None, seed: int = 7,
) -> dict[str, Any]:  # fmt: skip
    """Langevin MD (ML potential) with the vacancy position recorded every ``every`` steps."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.workflows.calculators import mlip_calculator

    atoms = AseAtomsAdaptor.get_atoms(as_structure(structure))
    atoms.calc = mlip_calculator(model)
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    dyn = Langevin(
        atoms,
        timestep_fs * units.fs,
        temperature_K=temperature_K,
        friction=0.01 / units.fs,
        rng=rng,
    )
    mask = np.array([s == element for s in atoms.get_chemical_symbols()])
    frames: list[np.ndarray] = []
    temps: list[float] = []

    def record() -> None:
        frames.append(atoms.get_scaled_positions(wrap=True)[mask].copy())
        temps.append(float(atoms.get_temperature()))

    dyn.attach(record, interval=every)
    dyn.run(steps)
    track = vacancy_track(host, frames, element)
    return {"result_type": "md", "temperature_K": temperature_K, "steps": steps, "timestep_fs": timestep_fs,
            "mean_temperature_K": float(np.mean(temps)) if temps else None, "vacancy_track": track,
            "crossings": crossings(track), "frames": [f.tolist() for f in frames]}  # fmt: skip


def classify_hops(host: Any, hops: list[Any]) -> dict[str, Any]:
    """Shortest hop that stays in the vacancy's grain (``along``) and one that changes grain (``across``)."""
    domains = host.site_properties.get("domain", [None] * len(host))
    picked: dict[str, Any] = {}
    for hop in sorted(hops, key=lambda h: h.length):
        kind = "along" if domains[hop.from_index] == domains[hop.vacancy_index] else "across"
        picked.setdefault(kind, hop)
    return picked


@dataclass
class RPFaultFlowMaker(Maker):
    """RP-fault study.

    Steps: (1) halide vacancy near the fault and far from it (grain middle); (2) relax
    both (ML pre-relax + ``relax_maker``) -> segregation energy E(near) - E(far); (3) hops of
    a halide into the near vacancy, the shortest along the fault and the shortest across
    it: end points, relax, NEB (``neb_maker``); (4) ML-potential Langevin MD of the near
    vacancy cell at ``md_temperature_K`` with the vacancy located every frame (the empty
    halide site) and its grain crossings counted; (5) report.
    """

    name: str = "rp fault study"
    relax_maker: Maker | None = None
    prerelax_maker: Maker | None = None
    neb_maker: Maker | None = None
    halide: str | None = None
    hop_cutoff: float = 8.0
    md: dict[str, Any] = field(
        default_factory=lambda: {"temperature_K": 500.0, "steps": 2000, "timestep_fs": 2.0}
    )

    def make(self, structure: Any) -> Flow:
        """Build the flow for an RP-fault model (``domain`` labels on the atoms)."""
        from perovflow.structures.faults import place_halide_vacancy
        from perovflow.structures.paths import enumerate_hops

        host = as_structure(structure)
        labels = {"study": self.name}
        relax = None if self.relax_maker is None else with_fields(self.relax_maker, defect=True)
        jobs, energies, info = [], {}, {}
        for where in ("near", "far"):
            cell, info[where] = place_halide_vacancy(host, where, self.halide)
            chain, _relaxed = relax_chain(
                cell, relax, self.prerelax_maker, f"V_X {where}", {**labels, "position": where}
            )
            jobs += chain
            energies[where] = chain[-1].output if chain else None
        element = info["near"]["element"]
        halides = sorted({s.specie.symbol for s in host} & {"F", "Cl", "Br", "I"})
        hops = enumerate_hops(
            host,
            element,
            vacancy_site=info["near"]["index"],
            cutoff=self.hop_cutoff,
            species=halides,
        )
        nebs = {}
        for kind, hop in classify_hops(host, hops).items() if self.neb_maker is not None else []:
            ends = hop_endpoints_job(host, hop.to_dict())
            ends.name = f"{kind} endpoints"
            c1, a = relax_chain(
                ends.output["initial"], relax, self.prerelax_maker, f"{kind} initial", labels
            )
            c2, b = relax_chain(
                ends.output["final"], relax, self.prerelax_maker, f"{kind} final", labels
            )
            neb_maker = with_fields(
                self.neb_maker,
                name=f"{kind} neb",
                labels={**labels, "direction": kind, **hop.to_dict()},
            )
            neb = tag(
                neb_maker.make(a, b),
                code=neb_maker.code,
                kind="neb",
                images=neb_maker.settings()["nimages"],
            )
            jobs += [ends, *c1, *c2, neb]
            nebs[kind] = neb.output
        md_start = (
            energies["near"].structure
            if energies["near"] is not None
            else place_halide_vacancy(host, "near", self.halide)[0]
        )
        md = md_vacancy_job(md_start, host, element, **self.md)
        md.name = "ml md"
        report = rp_fault_report(energies, nebs, md.output, info)
        report.name = "rp fault report"
        return Flow([*jobs, md, report], output=report.output, name=self.name)


@job
def rp_fault_report(energies: dict, nebs: dict, md: dict, info: dict) -> dict[str, Any]:
    """Segregation energy, across/along barriers, MD crossings."""
    e = {k: (_doc(v) or {}).get("energy_eV") for k, v in energies.items()}
    seg = None if None in e.values() else e["near"] - e["far"]
    barriers = {k: v["summary"]["barrier_forward_eV"] for k, v in nebs.items()}
    return {"result_type": "rp_fault", "vacancy": info, "segregation_eV": seg, "barriers_eV": barriers,
            "md_crossings": md["crossings"], "md_frames": len(md["vacancy_track"]),
            "vacancy_domains_visited": sorted({str(t["domain"]) for t in md["vacancy_track"]})}  # fmt: skip


def flow_from_study(study: Any, makers: dict[str, Any], structure: Any) -> Flow:
    """RP-fault flow of a study file (see :class:`RPFaultFlowMaker`)."""
    from perovflow.structures.faults import rp_fault
    from perovflow.workflows.migration import NEBMaker

    spec = study.section()
    neb = None
    if spec.neb is not None:
        neb = NEBMaker(code=spec.neb.code or study.code, protocol=study.protocol, charge=spec.neb.charge,
                       nimages=spec.neb.nimages, fmax=spec.neb.fmax, interpolation=spec.neb.interpolation,
                       method=spec.neb.method, cheap_model=spec.neb.cheap_model)  # fmt: skip
    maker = RPFaultFlowMaker(
        name=study.name, relax_maker=makers["relax"], prerelax_maker=makers["prerelax"], neb_maker=neb,
        halide=spec.halide, md={"temperature_K": spec.md_temperature_K, "steps": spec.md_steps,
                                "timestep_fs": spec.md_timestep_fs},
    )  # fmt: skip
    return maker.make(structure if structure is not None else rp_fault(**spec.options))
