"""Shared fixtures: the notebook's own definitions, and one smoke-profile execution of the whole notebook."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from notebook_defs import NOTEBOOK, load_definitions  # noqa: E402

DATA = ROOT / "data"


@pytest.fixture(scope="session")
def nb(tmp_path_factory):
    """The notebook's definitions as a module, on the CPU, checkpoints in a temporary folder."""
    torch.set_num_threads(2)
    return load_definitions(DEVICE=torch.device("cpu"), CHECKPOINTS=tmp_path_factory.mktemp("checkpoints"),
                            ARTIFACTS=tmp_path_factory.mktemp("artifacts"), PROFILE="test", DATA_ROOT=str(DATA),
                            AMP=None, PROGRESS=False)


def execute(notebook_path: Path) -> None:
    """Execute the notebook at `notebook_path` in its own folder with the smoke profile, saving it in place."""
    notebook = nbformat.read(notebook_path, as_version=4)
    env = {"ASGN3_PROFILE": "smoke", "ASGN3_DATA_ROOT": str(DATA), "ASGN3_PROGRESS": "0"}
    old = {key: os.environ.get(key) for key in [*env, "MPLBACKEND"]}
    os.environ.update(env)
    os.environ.pop("MPLBACKEND", None)          # the kernel's inline backend must draw the figures
    try:
        NotebookClient(notebook, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(notebook_path.parent)}}).execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    nbformat.write(notebook, notebook_path)


@pytest.fixture(scope="session")
def smoke_notebook(tmp_path_factory) -> Path:
    """A copy of the notebook executed top to bottom with the smoke profile, in a temporary folder.

    Its artifacts and checkpoints are written beside it (artifacts/, checkpoints/); data is read from the
    repository's data/ folder, which `make data` prepares.
    """
    if not (DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.fail("data/ is not prepared: run `make data` (or tools/prepare_data.py) before the tests")
    copy = tmp_path_factory.mktemp("smoke") / NOTEBOOK.name
    shutil.copy(NOTEBOOK, copy)
    execute(copy)
    return copy


@pytest.fixture(scope="session")
def rerun_smoke_notebook(smoke_notebook) -> Path:
    """The smoke notebook executed a second time in the same folder, as a second copy (it must load every stage);
    the first execution's artifacts are kept in first_artifacts/."""
    shutil.copytree(smoke_notebook.parent / "artifacts", smoke_notebook.parent / "first_artifacts")
    copy = smoke_notebook.with_name("rerun.ipynb")
    shutil.copy(NOTEBOOK, copy)
    execute(copy)
    return copy
