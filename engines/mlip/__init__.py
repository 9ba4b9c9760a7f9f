"""Pretrained ML potentials (CHGNet, SevenNet): cached ASE calculators and jobflow makers."""
