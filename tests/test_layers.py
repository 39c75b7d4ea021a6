"""Each layer imports only those below it, so a newcomer knows where a change
belongs: the plumbing (dataarch/) nothing of the others; backup/ and
reports/ the plumbing; the HTTP service (api/, app.py) those; the command
line (cli/) and the bench anything. By `import`, by `from`, and by a module
named in a string (importlib, `python -m`)."""

from __future__ import annotations

import ast
import re

import pytest
from conftest import PROJECT

LAYERS = ("dataarch", "backup", "reports", "api", "app", "cli", "bench")
MAY_IMPORT = {
    "dataarch": set(),
    "backup": {"dataarch"},
    "reports": {"dataarch"},
    "api": {"dataarch", "backup", "reports"},
    "app": {"dataarch", "api"},
}
_NAMED = re.compile(r"^(dataarch|backup|reports|api|app|cli|bench)(\.[a-z_.]+)?$")


def _sources(layer: str) -> list:
    folder = PROJECT / layer
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PROJECT / f"{layer}.py"]


def _imports(path) -> set[str]:  # noqa: ANN001
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
        elif (  # a module named in a string: "backup.__main__", "cli.main"
            isinstance(node, ast.Constant) and isinstance(node.value, str)
            and _NAMED.match(node.value) and "." in node.value
        ):  # fmt: skip
            found.add(node.value.split(".")[0])
    return found & set(LAYERS)


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_a_layer_imports_nothing_above_it(layer) -> None:
    allowed = MAY_IMPORT[layer] | {layer}
    for path in _sources(layer):
        above = _imports(path) - allowed
        assert not above, f"{path.relative_to(PROJECT)} imports {sorted(above)}"
