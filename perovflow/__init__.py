"""perovflow: DFT and atomistic workflows for halide perovskites.

The layers live in sibling folders of the repository and import as one package:

- ``perovflow.structures``: prototypes, supercells, defects, migration paths, interfaces.
- ``perovflow.engines``: code drivers (Quantum ESPRESSO, CP2K, ML potentials): input
  sets, parsers, error handlers and jobflow Makers.
- ``perovflow.workflows``: code-agnostic jobflow flows and study files.
- ``perovflow.analysis``: bands, PDOS, IPR, alignment, barriers, formation energies, plots.
- ``perovflow.hpc``: the results store, FireWorks/SLURM submission, query, rerun, recovery.
"""

from __future__ import annotations

__version__ = "0.1.0"

from perovflow.errors import PerovflowError

__all__ = ["PerovflowError", "__version__"]
