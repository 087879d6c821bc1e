"""Load the notebook's own definitions (imports, functions, classes) as a module, without running it.

Tests and benchmarks must use the very code the notebook runs, not a copy of it. Executing the whole
notebook trains models for minutes, so this loader keeps only the top-level `import`, `def` and `class`
statements and literal constants of its code cells and executes them in a fresh module. The caller's
values for the configuration globals those definitions read (DEVICE, CHECKPOINTS, CFG, ...) take
precedence over the notebook's own literals (PROFILE = "auto" in the notebook does not undo PROFILE="test").

Each cell is compiled under its own file name with its source registered in `linecache` as IPython registers
it (with a final newline), so that `inspect.getsource` returns the same text as in Jupyter: the notebook's
cache keys hash the source of the functions a stage runs, and they must come out the same here and in the
notebook, so that tools and tests find the stages a notebook run stored, and the notebook theirs.

The definitions live in a module named "__main__", the name they carry in Jupyter, and their classes are also
set on the running program's own __main__ module: a stage's stored result pickles its networks by class
(`__main__.VQVAE`), and must unpickle here as in the notebook.
"""
from __future__ import annotations

import ast
import linecache
import sys
import types
from pathlib import Path

import nbformat

NOTEBOOK = Path(__file__).resolve().parents[2] / "Lastname_Firstname_Asgn3.ipynb"
DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)


def is_literal_assignment(node: ast.stmt) -> bool:
    """True for `NAME = <literal>` (a constant such as a tuple of class names), which definitions may read."""
    if not isinstance(node, ast.Assign) or not all(isinstance(target, ast.Name) for target in node.targets):
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
    """A module holding the notebook's definitions, with `globals_` (e.g. DEVICE=torch.device("cpu")) set.

    Load it once per process: its classes become the ones `__main__.<name>` pickles refer to."""
    cells = [cell for cell in nbformat.read(notebook, as_version=4).cells if cell.cell_type == "code"]
    module = types.ModuleType("__main__")
    module.__dict__.update(globals_)
    for index, cell in enumerate(cells):
        body = definitions(cell.source)
        if not body:
            continue
        filename = f"<{notebook.name} code cell {index}>"
        source = cell.source + "\n"
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        exec(compile(ast.Module(body=body, type_ignores=[]), filename, "exec"), module.__dict__)
    module.__dict__.update(globals_)
    main = sys.modules["__main__"]
    for name, value in vars(module).items():
        if isinstance(value, type) and value.__module__ == "__main__":
            setattr(main, name, value)
    return module


def assigns(code: str, name: str) -> bool:
    """True when a top-level statement of `code` assigns `name`."""
    return any(isinstance(node, ast.Assign) and any(isinstance(target, ast.Name) and target.id == name
                                                     for target in node.targets) for node in ast.parse(code).body)


def configuration_source(notebook: Path = NOTEBOOK) -> str:
    """The notebook's imports, its configuration cell and the cells after it up to the one that resolves the profile,
    the seed, the device (it assigns DEVICE), the precision and the output folders: executed alone, they make the
    choices a Run-all would make."""
    cells = [cell.source for cell in nbformat.read(notebook, as_version=4).cells if cell.cell_type == "code"]
    imports = next(source for source in cells if "import torch\n" in source)
    config = next(i for i, source in enumerate(cells) if source.startswith("#@title Configuration"))
    resolve = next(i for i in range(config, len(cells)) if assigns(cells[i], "DEVICE"))
    return "\n".join([imports, *cells[config:resolve + 1]])


def notebook_constant(name: str, notebook: Path = NOTEBOOK):
    """The value of the literal `NAME = ...` that a code cell of the notebook assigns (e.g. the data checksums),
    read without executing anything."""
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for node in ast.parse(cell.source).body:
            if is_literal_assignment(node) and any(target.id == name for target in node.targets):
                return ast.literal_eval(node.value)
    raise KeyError(f"the notebook {notebook.name} assigns no literal {name}")
