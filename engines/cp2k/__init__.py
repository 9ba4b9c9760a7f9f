"""CP2K engine: input sets (inputs, writer), parsers, custodian handlers and jobflow makers (jobs)."""
