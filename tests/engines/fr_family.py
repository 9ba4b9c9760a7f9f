"""Generate the ld1-fr-pbe family once per test session and hand each test a copy."""

from __future__ import annotations

import shutil
from pathlib import Path

ELEMENTS = ("Cs", "Pb", "Bi", "Sn", "Br", "I", "Cl", "Na", "Ag")


def build(root: Path, elements: tuple[str, ...] = ELEMENTS) -> Path:
    """Generate (ld1.x) and verify ``elements`` into ``root`` unless already there."""
    from perovflow.engines.qe.ld1 import fr_pseudo_file

    for el in elements:
        fr_pseudo_file(el, root)
    return root


def install(cache: Path) -> Path:
    """Copy the session's family into this test's ``project_dir/pseudos/ld1-fr-pbe``."""
    from perovflow.engines.qe.ld1 import FAMILY
    from perovflow.settings import get_settings

    s = get_settings()
    dst = s.resolved(s.project_dir) / "pseudos" / FAMILY
    shutil.copytree(cache, dst, dirs_exist_ok=True)
    return dst
