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
                            ARTIFACTS=tmp_path_factory.mktemp("artifacts"), PROFILE="test", DATA_ROOT=str(DATA))


@pytest.fixture(scope="session")
def smoke_notebook(tmp_path_factory) -> Path:
    """A copy of the notebook executed top to bottom with the smoke profile, in a temporary folder.

    Its artifacts and checkpoints are written beside it (artifacts/, checkpoints/); data is read from the
    repository's data/ folder, which `make data` prepares.
    """
    if not (DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.fail("data/ is not prepared: run `make data` (or tools/prepare_data.py) before the tests")
    workdir = tmp_path_factory.mktemp("smoke")
    copy = workdir / NOTEBOOK.name
    shutil.copy(NOTEBOOK, copy)
    notebook = nbformat.read(copy, as_version=4)
    env = {"ASGN3_PROFILE": "smoke", "ASGN3_DATA_ROOT": str(DATA)}
    old = {key: os.environ.get(key) for key in [*env, "MPLBACKEND"]}
    os.environ.update(env)
    os.environ.pop("MPLBACKEND", None)          # the kernel's inline backend must draw the figures
    try:
        NotebookClient(notebook, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(workdir)}}).execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    nbformat.write(notebook, copy)
    return copy
