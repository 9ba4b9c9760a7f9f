"""Atomic structures for halide-perovskite studies (``perovflow.structures``).

Modules (import them directly; nothing heavy is imported here):

* :mod:`~perovflow.structures.prototypes` - literature crystal prototypes (space group +
  Wyckoff sites in ``prototypes.yaml``, each with its source): ``list_prototypes``,
  ``build_prototype``.
* :mod:`~perovflow.structures.io` - ``load_structure`` (prototype name or file),
  atomic ``write_structure`` (CIF/extxyz/POSCAR), ``check_structure`` (overlaps),
  ``to_atoms``/``from_atoms``.
* :mod:`~perovflow.structures.supercells` - ``parse_matrix``, ``make_supercell``,
  ``min_length_supercell`` (periodic images >= L apart), ``image_distance``.
* :mod:`~perovflow.structures.variants` - ``substitute`` (symmetry-distinct
  arrangements), ``mix_halides`` (X-site alloys, smallest supercell that fits).
* :mod:`~perovflow.structures.defects` - ``DefectSite``, ``enumerate_vacancies``,
  ``enumerate_substitutions``, ``build_defect``, ``suggest_charge_states``,
  ``validate_charge``.
* paths, interfaces, nanocrystals, faults - migration paths and assemblies built on the above.
"""
