"""The layers import one way (an import check over the source tree, no code run).

structures -> engines -> workflows -> hpc, with analysis reading documents and files (stored
documents through :mod:`perovflow.documents`, which the CLI connects to the store);
``perovflow`` itself (settings, errors, launch, the shared data types) is the core that
everyone may import, and only the CLI knows every layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
LAYERS = ("structures", "engines", "workflows", "hpc", "analysis")
FORBIDDEN = {
    "structures": {"engines", "workflows", "hpc", "analysis", "cli"},
    "engines": {"workflows", "hpc", "analysis", "cli"},
    # flows take the store as an argument: the CLI (or a FireWorks task) gives it
    "workflows": {"hpc", "cli"},
    "hpc": {"analysis", "cli"},
    # analysis reads documents through perovflow.documents; the CLI installs the store's
    "analysis": {"hpc", "workflows", "cli"},
}


def perovflow_imports(folder: Path, root: Path = ROOT) -> list[tuple[str, int, str]]:
    """(file relative to ``root``, line, imported perovflow sub-package) for ``folder``."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "perovflow" and len(parts) > 1:
                    found.append((str(path.relative_to(root)), node.lineno, parts[1]))
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_what_it_may(layer):
    bad = [f"{f}:{n} imports perovflow.{sub}" for f, n, sub in perovflow_imports(ROOT / layer)]
    bad = [b for b in bad if b.rsplit(".", 1)[-1] in FORBIDDEN[layer]]
    assert bad == []


def test_only_the_cli_knows_every_layer():
    imported = {
        layer: {sub for _, _, sub in perovflow_imports(ROOT / layer) if sub in LAYERS} | {layer}
        for layer in LAYERS
    }
    assert [layer for layer, seen in imported.items() if seen >= set(LAYERS)] == []
    cli = {sub for _, _, sub in perovflow_imports(ROOT / "perovflow" / "cli") if sub in LAYERS}
    assert cli == set(LAYERS)


def test_core_imports_no_layer():
    core = ROOT / "perovflow"
    found = [
        (f, n, sub)
        for f, n, sub in perovflow_imports(core)
        if not f.startswith("perovflow/cli/") and sub in LAYERS
    ]
    assert found == [], "the core package must not depend on a layer"


def test_the_check_sees_a_violation(tmp_path):
    # the checker itself: a layer file importing a forbidden one is found
    (tmp_path / "m.py").write_text("from perovflow.analysis.ipr import ipr_values\n")
    assert perovflow_imports(tmp_path, tmp_path) == [("m.py", 1, "analysis")]
