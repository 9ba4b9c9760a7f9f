"""CP2K engine: input sets (inputs, writer), parsers, custodian handlers, jobflow makers (jobs)
and an ASE calculator for NEB/MD steps (calc)."""
