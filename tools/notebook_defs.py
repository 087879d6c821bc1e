"""Load the notebook's own definitions (imports, functions, classes) as a module, without running it.

Tests and benchmarks must use the very code the notebook runs, not a copy of it. Executing the whole
notebook trains models for minutes, so this loader keeps only the top-level `import`, `def` and `class`
statements and literal constants of its code cells, executes them in a fresh module, and then sets the few configuration
globals those definitions read (DEVICE, CHECKPOINTS, ...) to values the caller chooses.
"""
from __future__ import annotations

import ast
import types
from pathlib import Path

import nbformat

NOTEBOOK = Path(__file__).resolve().parent.parent / "Lastname_Firstname_Asgn3.ipynb"
DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)


def is_literal_assignment(node: ast.stmt) -> bool:
    """True for `NAME = <literal>` (a constant such as a tuple of class names), which definitions may read."""
    if not isinstance(node, ast.Assign):
        return False
    try:
        ast.literal_eval(node.value)
    except ValueError:
        return False
    return True


def definitions(code: str) -> list[ast.stmt]:
    """The top-level import/def/class statements and literal constants of `code`, in order."""
    return [node for node in ast.parse(code).body if isinstance(node, DEFINITIONS) or is_literal_assignment(node)]


def load_definitions(notebook: Path = NOTEBOOK, **globals_) -> types.ModuleType:
    """A module holding the notebook's definitions, with `globals_` (e.g. DEVICE=torch.device("cpu")) set."""
    cells = nbformat.read(notebook, as_version=4).cells
    body = [node for cell in cells if cell.cell_type == "code" for node in definitions(cell.source)]
    module = types.ModuleType("asgn3_notebook")
    module.__dict__.update(globals_)
    exec(compile(ast.Module(body=body, type_ignores=[]), str(notebook), "exec"), module.__dict__)
    return module
