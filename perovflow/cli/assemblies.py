"""CLI: ``perovflow paths|interfaces|nanocrystals|faults`` (assembled structures).

Every command prints a table (or ``--json``) and writes its files atomically: into a
temporary name next to the target, renamed when complete (:mod:`perovflow.cli._write`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from perovflow.cli._common import JsonOpt, emit, table
from perovflow.cli._write import write_atomic
from perovflow.cli.structures import CellOpt, MinLengthOpt, NameArg, SubstituteOpt, SupercellOpt
from perovflow.errors import InputError

paths_app = typer.Typer(help="Vacancy migration hops and NEB images.", no_args_is_help=True)
interfaces_app = typer.Typer(help="Coherent film/substrate interfaces (ZSL).", no_args_is_help=True)
nanocrystals_app = typer.Typer(
    help="Finite nanocrystal models (CsPbBr3 cubes, heterostructures).", no_args_is_help=True
)
faults_app = typer.Typer(help="Ruddlesden–Popper stacking-fault models.", no_args_is_help=True)

OutFile = Annotated[
    Path,
    typer.Option(
        "-o", "--output", help="File to write (.extxyz keeps domain labels; .vasp, .cif ...)."
    ),
]


def register(app: typer.Typer) -> None:
    """Register the ``paths``, ``interfaces``, ``nanocrystals`` and ``faults`` groups."""
    app.add_typer(paths_app, name="paths")
    app.add_typer(interfaces_app, name="interfaces")
    app.add_typer(nanocrystals_app, name="nanocrystals")
    app.add_typer(faults_app, name="faults")


# ---------------------------------------------------------------- structures


def _structure(
    name: str, cell: str, supercell: str | None, min_length: float | None, substitute: str | None
):
    from perovflow.cli.structures import structure_from_options

    structure, _info = structure_from_options(name, cell, supercell, min_length, substitute)
    return structure


def _hop_rows(hops) -> list[dict[str, Any]]:
    return [
        {
            "#": k,
            "moving": h.moving_element,
            "from": h.from_index,
            "vacancy": h.vacancy_index,
            "length_A": round(h.length, 3),
            "environment_left": h.environment_left,
            "vacancy_site": h.vacancy_environment,
            "multiplicity": h.multiplicity,
        }
        for k, h in enumerate(hops)
    ]


def _hops(
    structure,
    vacancy: str | None,
    site: int | None,
    cutoff: float | None,
    species: list[str] | None,
    seed: bool,
):
    from perovflow.structures import paths

    if seed:
        return paths.seed_hops(structure)
    if not vacancy:
        raise InputError(
            "no vacancy element given", "add --vacancy EL (e.g. --vacancy Cl) or --seed"
        )
    return paths.enumerate_hops(
        structure, vacancy, vacancy_site=site, cutoff=cutoff, species=species
    )


Vacancy = Annotated[
    str | None,
    typer.Option(
        "--vacancy", help="Element whose site is vacant, e.g. Na or Cl (not needed with --seed)."
    ),
]
Site = Annotated[
    int | None,
    typer.Option("--site", help="Host index of the vacant site (default: every distinct site)."),
]
Cutoff = Annotated[
    float | None, typer.Option("--cutoff", help="Longest hop in Å (default: first shell).")
]
Species = Annotated[
    list[str] | None,
    typer.Option("--species", help="Moving element (repeatable; default: the vacancy's)."),
]
Seed = Annotated[
    bool,
    typer.Option(
        "--seed", help="Only the four hops of seed 004 (Na, Ag -> V_Na; Cl from Na/Ag–Cl -> V_Cl)."
    ),
]


@paths_app.command("list")
def paths_list(
    name: NameArg,
    vacancy: Vacancy = None,
    site: Site = None,
    cutoff: Cutoff = None,
    species: Species = None,
    seed: Seed = False,
    cell: CellOpt = "conventional",
    supercell: SupercellOpt = None,
    min_length: MinLengthOpt = None,
    substitute: SubstituteOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the symmetry-distinct hops of ions into a vacancy."""
    structure = _structure(name, cell, supercell, min_length, substitute)
    rows = _hop_rows(_hops(structure, vacancy, site, cutoff, species, seed))
    data = {
        "structure": structure.composition.formula.replace(" ", ""),
        "natoms": len(structure),
        "hops": rows,
    }
    emit(data, as_json, lambda d: f"{d['structure']} ({d['natoms']} atoms)\n" + table(d["hops"]))


@paths_app.command("build")
def paths_build(
    name: NameArg,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Folder for the images (must not exist).")
    ],
    vacancy: Vacancy = None,
    hop: Annotated[int, typer.Option("--hop", help="Row # of `paths list` (same options).")] = 0,
    images: Annotated[int, typer.Option("--images", help="Intermediate images.")] = 9,
    method: Annotated[str, typer.Option("--method", help="idpp or linear.")] = "idpp",
    site: Site = None,
    cutoff: Cutoff = None,
    species: Species = None,
    seed: Seed = False,
    cell: CellOpt = "conventional",
    supercell: SupercellOpt = None,
    min_length: MinLengthOpt = None,
    substitute: SubstituteOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write NEB images of one hop: DIR/00.vasp ... DIR/NN.vasp, DIR/images.extxyz, DIR/hop.json."""
    from perovflow.structures import paths

    if output.exists():
        raise InputError(f"{output} already exists", "choose a new folder or remove the old one")
    structure = _structure(name, cell, supercell, min_length, substitute)
    hops = _hops(structure, vacancy, site, cutoff, species, seed)
    if not 0 <= hop < len(hops):
        raise InputError(
            f"hop {hop} does not exist ({len(hops)} hops listed)", f"use --hop 0 to {len(hops) - 1}"
        )
    chosen = hops[hop]
    initial, final = paths.hop_endpoints(structure, chosen)
    imgs = paths.interpolate(initial, final, nimages=images, method=method)  # type: ignore[arg-type]
    info = _write_images(output, imgs, chosen, images, method)
    info["output"] = str(output)
    emit(info, as_json, _images_summary)


def _write_images(output: Path, imgs: list, chosen: Any, nimages: int, method: str) -> dict:
    """Write the images, ``images.extxyz`` and ``hop.json`` to a new folder ``output``.

    The folder is filled under a temporary name next to it and renamed at the end, so a
    failed write leaves nothing behind. Returns the ``hop.json`` record.
    """
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.cli._common import to_json
    from perovflow.structures import paths

    parent = output.resolve().parent
    if not parent.exists():
        raise InputError(f"folder {parent} does not exist", "create it first")
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=parent))
    try:
        for k, img in enumerate(imgs):
            img.to(filename=str(tmp / f"{k:02d}.vasp"), fmt="poscar")
        write(
            str(tmp / "images.extxyz"),
            [AseAtomsAdaptor.get_atoms(i) for i in imgs],
            format="extxyz",
        )
        info = {
            "hop": chosen.to_dict() | {"moving_index": chosen.moving_index},
            "nimages": nimages,
            "method": method,
            "min_distance_ratio": round(paths.min_distance_ratio(imgs), 3),
            "files": [f"{k:02d}.vasp" for k in range(len(imgs))] + ["images.extxyz"],
        }
        (tmp / "hop.json").write_text(to_json(info))
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return info


def _images_summary(d: dict) -> str:
    """Human output of ``paths build``: the hop, the images and the closest contact."""
    return (
        f"{d['hop']['label']}\n{d['nimages']} images + 2 end points ({d['method']}) -> {d['output']} "
        f"(closest contact {d['min_distance_ratio']} x covalent sum)"
    )


# ---------------------------------------------------------------- interfaces


@interfaces_app.command("build")
def interfaces_build(
    film: Annotated[
        str, typer.Argument(help="Film: prototype name or structure file (e.g. Cs4PbBr6).")
    ],
    substrate: Annotated[
        str, typer.Argument(help="Substrate: prototype name or file (e.g. CsPbBr3-cubic).")
    ],
    max_strain: Annotated[
        float, typer.Option("--max-strain", help="Largest |principal strain| on the film.")
    ] = 0.03,
    max_area: Annotated[
        float, typer.Option("--max-area", help="Largest interface area (Å²).")
    ] = 400.0,
    film_miller: Annotated[
        str | None, typer.Option("--film-miller", help="Film plane, e.g. 0,1,0.")
    ] = None,
    substrate_miller: Annotated[
        str | None, typer.Option("--substrate-miller", help="Substrate plane, e.g. 0,0,1.")
    ] = None,
    max_candidates: Annotated[
        int, typer.Option("--max-candidates", help="Interfaces built and listed.")
    ] = 12,
    pick: Annotated[int, typer.Option("--pick", help="Row # written with -o.")] = 0,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the picked interface here.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List coherent interfaces (strain, area, atoms, terminations) and write one."""
    from perovflow.structures.interfaces import build_interfaces

    cands = build_interfaces(
        film,
        substrate,
        film_miller,
        substrate_miller,
        max_strain=max_strain,
        max_area=max_area,
        max_candidates=max_candidates,
    )
    rows = [{"#": k, **c.to_dict()} for k, c in enumerate(cands)]
    data: dict[str, Any] = {"candidates": rows}
    if output is not None:
        if not 0 <= pick < len(cands):
            raise InputError(
                f"candidate {pick} does not exist", f"use --pick 0 to {len(cands) - 1}"
            )
        data["written"] = {"pick": pick, "path": str(write_atomic(cands[pick].structure, output))}
    emit(data, as_json, _interfaces_table)


def _interfaces_table(d: dict) -> str:
    """Human output of ``interfaces build``: one row per candidate, then what was written."""
    rows = [
        {
            "#": c["#"],
            "film": "(" + " ".join(map(str, c["film_miller"])) + ")",
            "substrate": "(" + " ".join(map(str, c["substrate_miller"])) + ")",
            "terminations film/substrate": " / ".join(c["termination"]),
            "strain_%": round(100 * c["strain"], 2),
            "area_A2": round(c["area_A2"], 1),
            "natoms": c["natoms"],
        }
        for c in d["candidates"]
    ]
    text = table(rows)
    return text + (
        f"\nwrote #{d['written']['pick']} -> {d['written']['path']}" if "written" in d else ""
    )


# ---------------------------------------------------------------- nanocrystals


@nanocrystals_app.command("build")
def nanocrystals_build(
    output: OutFile,
    edge: Annotated[
        int | None, typer.Option("--edge", help="Pb per cube edge (5 -> Cs200Pb125Br450).")
    ] = None,
    edge_nm: Annotated[
        float | None, typer.Option("--edge-nm", help="Cube edge in nm (3.2 -> 5 Pb).")
    ] = None,
    half_sphere: Annotated[
        str | None,
        typer.Option("--half-sphere", help="Attach a half-sphere of this prototype (Pb4S3Br2)."),
    ] = None,
    radius: Annotated[
        float, typer.Option("--radius", help="Half-sphere radius (Å); seed 002: 21.")
    ] = 21.0,
    face: Annotated[
        str, typer.Option("--face", help="Cube face for the half-sphere: +z, -z, +x ...")
    ] = "+z",
    as_json: JsonOpt = False,
) -> None:
    """Build a CsBr-terminated CsPbBr3 cube, optionally with a half-sphere on one face."""
    from perovflow.structures.nanocrystals import csbr_cube, describe, place_half_sphere

    if edge is None and edge_nm is None:
        edge = 5
    mol = csbr_cube(edge_cells=edge, edge_nm=edge_nm)
    if half_sphere:
        mol = place_half_sphere(mol, half_sphere, radius=radius, face=face)
    data = describe(mol)
    data["output"] = str(write_atomic(mol, output))
    emit(data, as_json)


# ---------------------------------------------------------------- faults


@faults_app.command("build")
def faults_build(
    output: OutFile,
    a: Annotated[
        str, typer.Option("--a", help="Grain A prototype (cubic ABX3).")
    ] = "CsPbBr3-cubic",
    b: Annotated[str, typer.Option("--b", help="Grain B prototype (cubic ABX3).")] = "CsPbI3-cubic",
    layers: Annotated[int, typer.Option("--layers", help="BX2 layers per grain.")] = 3,
    layers_b: Annotated[
        int | None, typer.Option("--layers-b", help="BX2 layers of grain B (default: --layers).")
    ] = None,
    lateral: Annotated[str, typer.Option("--lateral", help="In-plane size, 1x1 or 2x2.")] = "1x1",
    vacancy: Annotated[
        str | None,
        typer.Option(
            "--vacancy", help="Remove a halide: near (first layer) or far (grain middle)."
        ),
    ] = None,
    vacancy_element: Annotated[
        str | None, typer.Option("--vacancy-element", help="Halide to remove (default: heaviest).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build two perovskite grains separated by Ruddlesden–Popper faults (CsX-terminated)."""
    from perovflow.structures.faults import fault_planes, place_halide_vacancy, rp_fault

    s = rp_fault(a, b, layers, layers_b if layers_b is not None else layers, lateral=lateral)
    data: dict[str, Any] = {
        "formula": s.composition.formula.replace(" ", ""),
        "natoms": len(s),
        "cell_A": [round(x, 3) for x in s.lattice.abc],
        "fault_planes_z_A": [round(z, 3) for z in fault_planes(s)],
    }
    if vacancy is not None:
        s, info = place_halide_vacancy(s, vacancy, vacancy_element)  # type: ignore[arg-type]
        data.update(formula=s.composition.formula.replace(" ", ""), natoms=len(s), vacancy=info)
    data["output"] = str(write_atomic(s, output))
    emit(data, as_json)
