"""CLI: ``perovflow structures`` (list, build) and ``perovflow defects`` (list, build).

Every command that takes a structure accepts the same options (prototype name or file,
``--cell``, ``--supercell`` or ``--min-length``, ``--substitute``), declared once below
as annotated types and turned into a structure by :func:`structure_from_options`, which
other command modules (``perovflow.cli.assemblies``) reuse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from perovflow.cli._common import JsonOpt, emit, table
from perovflow.errors import InputError

NameArg = Annotated[
    str,
    typer.Argument(help="Prototype name (see `perovflow structures list`) or a structure file."),
]
CellOpt = Annotated[
    str, typer.Option("--cell", help="conventional or primitive cell of the prototype/file.")
]
SupercellOpt = Annotated[
    str | None,
    typer.Option("--supercell", help="Repeat the cell: 2x1x1, 2 (=2x2x2) or nine integers."),
]
MinLengthOpt = Annotated[
    float | None,
    typer.Option(
        "--min-length", help="Smallest near-cubic supercell with periodic images >= L Å apart."
    ),
]
SubstituteOpt = Annotated[
    str | None,
    typer.Option(
        "--substitute",
        help="OLD:NEW:COUNT[:PICK], e.g. Na:Ag:1; replaces COUNT atoms in the symmetry-distinct "
        "arrangement PICK (default 0, the most frequent).",
    ),
]
MaxAtomsOpt = Annotated[
    int, typer.Option("--max-atoms", help="Largest supercell --min-length may build.")
]
OutOpt = Annotated[Path | None, typer.Option("-o", "--output", help="Write CIF/extxyz/POSCAR.")]


VacancyOpt = Annotated[str | None, typer.Option("--vacancy", help="Element to remove, e.g. Br.")]
ReplaceOpt = Annotated[
    str | None, typer.Option("--replace", help="OLD:NEW substitutional defect, e.g. Pb:Sn.")
]


def _sites(structure, vacancy: str | None, replace: str | None):
    from perovflow.structures.defects import enumerate_substitutions, enumerate_vacancies

    if (vacancy is None) == (replace is None):
        raise InputError(
            "give exactly one of --vacancy EL or --replace OLD:NEW", "e.g. --vacancy Br"
        )
    if vacancy is not None:
        return enumerate_vacancies(structure, vacancy)
    parts = replace.split(":")
    if len(parts) != 2:
        raise InputError(f"cannot read --replace '{replace}'", "write OLD:NEW, e.g. Pb:Sn")
    return enumerate_substitutions(structure, *parts)


def parse_substitution(text: str) -> tuple[str, str, int, int]:
    """Parse ``OLD:NEW:COUNT[:PICK]`` into its parts (InputError if malformed)."""
    parts = text.split(":")
    fix = "write OLD:NEW:COUNT[:PICK], e.g. Na:Ag:1"
    if len(parts) not in (3, 4):
        raise InputError(f"cannot read substitution '{text}'", fix)
    try:
        count, pick = int(parts[2]), int(parts[3]) if len(parts) == 4 else 0
    except ValueError:
        raise InputError(f"substitution '{text}' needs integer COUNT and PICK", fix) from None
    return parts[0], parts[1], count, pick


def describe(structure) -> dict[str, Any]:
    """Formula, atom count, space group (spglib, symprec 0.1), lattice and image distance."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from perovflow.structures.supercells import image_distance

    sga = SpacegroupAnalyzer(structure, symprec=0.1)
    lat = structure.lattice
    return {
        "formula": structure.composition.formula.replace(" ", ""),
        "reduced_formula": structure.composition.reduced_formula,
        "natoms": len(structure),
        "spacegroup": {"symbol": sga.get_space_group_symbol(), "number": sga.get_space_group_number()},
        "lattice": {k: round(float(getattr(lat, k)), 4) for k in ("a", "b", "c", "alpha", "beta", "gamma")},
        "image_distance": round(image_distance(structure), 3),
    }  # fmt: skip


def structure_from_options(
    name: str,
    cell: str = "conventional",
    supercell: str | None = None,
    min_length: float | None = None,
    substitute: str | None = None,
    max_atoms: int = 2000,
) -> tuple[Any, dict[str, Any]]:
    """Build the structure the shared CLI options describe.

    Order: load (prototype or file, ``cell``), then repeat (``supercell`` or
    ``min_length``, at most ``max_atoms`` atoms), then substitute. Returns ``(structure, info)`` where ``info`` is
    :func:`describe` plus ``source``, ``supercell``, and for substitutions
    ``n_distinct``, ``multiplicities`` and ``substitution``.
    """
    from perovflow.structures.io import load_structure
    from perovflow.structures.supercells import make_supercell, min_length_supercell, parse_matrix
    from perovflow.structures.variants import substitute as do_substitute

    if supercell and min_length is not None:
        raise InputError("--supercell and --min-length both given", "use only one of them")
    structure = load_structure(name, cell=cell)
    extra: dict[str, Any] = {"source": name, "cell": cell}
    if supercell:
        extra["supercell"] = parse_matrix(supercell).tolist()
        structure = make_supercell(structure, supercell)
    elif min_length is not None:
        result = min_length_supercell(structure, min_length, max_atoms=max_atoms)
        structure, extra["supercell"] = result.structure, result.matrix
    if substitute:
        old, new, count, pick = parse_substitution(substitute)
        result = do_substitute(structure, old, new, count, pick=pick)
        structure = result.structure
        extra |= {
            "substitution": result.label,
            "n_distinct": result.n_distinct,
            "multiplicities": result.multiplicities,
        }
    return structure, describe(structure) | extra


def _human_info(info: dict[str, Any]) -> str:
    sg, lat = info["spacegroup"], info["lattice"]
    lines = [
        f"formula:        {info['formula']} ({info['natoms']} atoms)",
        f"space group:    {sg['symbol']} ({sg['number']})",
        "lattice:        a={a} b={b} c={c} Å, alpha={alpha} beta={beta} gamma={gamma}".format(
            **lat
        ),
        f"image distance: {info['image_distance']} Å",
    ]
    for key in ("supercell", "substitution", "n_distinct", "defect", "charge", "file"):
        if info.get(key) is not None:
            lines.append(f"{key + ':':15} {info[key]}")
    return "\n".join(lines)


def _write(structure, output: Path | None, info: dict[str, Any]) -> None:
    if output is not None:
        from perovflow.structures.io import write_structure

        info["file"] = str(write_structure(structure, output))


def register(app: typer.Typer) -> None:
    """Register the ``structures`` and ``defects`` command groups on ``app``."""
    structures = typer.Typer(
        help="Crystal prototypes, supercells and substitutions.", no_args_is_help=True
    )
    defects = typer.Typer(help="Symmetry-distinct point defects and defect supercells.", no_args_is_help=True)  # fmt: skip
    app.add_typer(structures, name="structures")
    app.add_typer(defects, name="defects")
    _add_structure_commands(structures)
    _add_defects_list(defects)
    _add_defects_build(defects)


def _add_structure_commands(structures: typer.Typer) -> None:
    """``structures list`` and ``structures build``."""

    @structures.command("list")
    def list_cmd(as_json: JsonOpt = False) -> None:
        """List the built-in prototypes with space group and literature source."""
        from perovflow.structures.prototypes import list_prototypes

        rows = [p.to_dict() for p in list_prototypes()]
        emit(rows, as_json, lambda r: table(r, ["name", "formula", "spacegroup", "number", "description"]))  # fmt: skip

    @structures.command("build")
    def build_cmd(
        name: NameArg,
        cell: CellOpt = "conventional",
        supercell: SupercellOpt = None,
        min_length: MinLengthOpt = None,
        substitute: SubstituteOpt = None,
        max_atoms: MaxAtomsOpt = 2000,
        output: OutOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Build a prototype or read a file, optionally repeat and substitute, and write it."""
        structure, info = structure_from_options(
            name, cell, supercell, min_length, substitute, max_atoms
        )
        _write(structure, output, info)
        emit(info, as_json, _human_info)


def _add_defects_list(defects: typer.Typer) -> None:
    """``defects list``: symmetry-distinct defect sites of a host."""

    @defects.command("list")
    def defects_list(
        name: NameArg,
        vacancy: VacancyOpt = None,
        replace: ReplaceOpt = None,
        cell: CellOpt = "conventional",
        supercell: SupercellOpt = None,
        min_length: MinLengthOpt = None,
        substitute: SubstituteOpt = None,
        max_atoms: MaxAtomsOpt = 2000,
        as_json: JsonOpt = False,
    ) -> None:
        """List symmetry-distinct defect sites with multiplicity, Wyckoff, environment, charges."""
        structure, info = structure_from_options(
            name, cell, supercell, min_length, substitute, max_atoms
        )
        sites = [
            {"site": n} | s.to_dict() for n, s in enumerate(_sites(structure, vacancy, replace))
        ]
        cols = ["site", "label", "index", "multiplicity", "wyckoff", "environment", "charge_states"]
        emit(
            {"host": info, "sites": sites} if as_json else sites, as_json, lambda r: table(r, cols)
        )


def _add_defects_build(defects: typer.Typer) -> None:
    """``defects build``: one defect supercell written to a file."""

    @defects.command("build")
    def defects_build(
        name: NameArg,
        output: Annotated[Path, typer.Option("-o", "--output", help="Defect structure file.")],
        vacancy: VacancyOpt = None,
        replace: ReplaceOpt = None,
        site: Annotated[int, typer.Option("--site", help="Row of `defects list` (default 0).")] = 0,
        charge: Annotated[int | None, typer.Option("--charge", help="Charge state q.")] = None,
        cell: CellOpt = "conventional",
        supercell: SupercellOpt = None,
        min_length: MinLengthOpt = None,
        substitute: SubstituteOpt = None,
        max_atoms: MaxAtomsOpt = 2000,
        as_json: JsonOpt = False,
    ) -> None:
        """Build one defect supercell (vacancy or substitution) and write it."""
        from perovflow.structures.defects import build_defect

        structure, host = structure_from_options(
            name, cell, supercell, min_length, substitute, max_atoms
        )
        sites = _sites(structure, vacancy, replace)
        if not 0 <= site < len(sites):
            raise InputError(f"--site {site} does not exist ({len(sites)} distinct sites)",
                             f"use --site 0..{len(sites) - 1} (see `perovflow defects list`)")  # fmt: skip
        defect = build_defect(structure, sites[site], charge=charge)
        info = describe(defect) | {
            "defect": sites[site].label,
            "charge": charge,
            "site_index": sites[site].index,
            "environment": sites[site].environment,
            "host_formula": host["formula"],
        }
        _write(defect, output, info)
        emit(info, as_json, _human_info)
