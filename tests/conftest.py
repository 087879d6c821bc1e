"""Shared fixtures: the notebook's own definitions, and the smoke-profile executions of the whole notebook."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from lib.notebook_defs import NOTEBOOK, load_definitions  # noqa: E402

DATA = ROOT / "data"
AUDIT = Path(__file__).resolve().parent / "support" / "notebook_audit.py"
NOTEBOOK_FIXTURES = {"smoke_notebook", "fp16_rerun_notebook"}


def pytest_collection_modifyitems(items):
    """A test that needs an executed notebook is slow: mark it, so that `-m "not slow"` leaves it out."""
    for item in items:
        if NOTEBOOK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def nb(tmp_path_factory):
    """The notebook's definitions as a module, on the CPU in fp32, with the smoke profile's configuration and
    checkpoints in a temporary folder."""
    torch.set_num_threads(2)
    module = load_definitions(DEVICE=torch.device("cpu"), CHECKPOINTS=tmp_path_factory.mktemp("checkpoints"),
                              ARTIFACTS=tmp_path_factory.mktemp("artifacts"), PROFILE="test", DATA_ROOT=str(DATA),
                              AMP=None, PRECISION="fp32", PROGRESS=False, ROOT=tmp_path_factory.mktemp("root"))
    module.CFG = module.merged(module.BASE, module.OVERRIDES["smoke"])
    return module


def kernel_start_up(folder: Path) -> Path:
    """An IPython profile folder whose start-up file installs tests/support/notebook_audit.py in the kernel."""
    startup = folder / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-audit.py").write_text(f"import sys\nsys.path.insert(0, {str(AUDIT.parent)!r})\n"
                                         "import notebook_audit\nnotebook_audit.install()\n")
    return folder / "ipython"


def execute(notebook_path: Path, **environment) -> Path:
    """Execute the notebook at `notebook_path` in its own folder with the smoke profile, saving it in place, with
    the audit of tests/support/notebook_audit.py in the kernel; `environment` adds variables
    (ASGN3_MIXED_PRECISION="fp16", ...). Returns the audit's JSON-lines file of figure findings."""
    notebook = nbformat.read(notebook_path, as_version=4)
    audit = notebook_path.with_suffix(".figures.jsonl")
    env = {"ASGN3_PROFILE": "smoke", "ASGN3_DATA_ROOT": str(DATA), "ASGN3_PROGRESS": "0",
           "IPYTHONDIR": str(kernel_start_up(notebook_path.parent / f".{notebook_path.stem}")),
           "NOTEBOOK_AUDIT_FILE": str(audit), **environment}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.delenv("MPLBACKEND", raising=False)          # the kernel's inline backend must draw the figures
        NotebookClient(notebook, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(notebook_path.parent)}}).execute()
    nbformat.write(notebook, notebook_path)
    return audit


def figure_findings(audit: Path) -> list[dict]:
    """The figure records the kernel audit wrote: [{"figure": title, "problems": [...]}, ...]."""
    return [json.loads(line) for line in audit.read_text().splitlines()] if audit.exists() else []


@pytest.fixture(scope="session")
def smoke_notebook(tmp_path_factory) -> Path:
    """A copy of the notebook executed top to bottom with the smoke profile, in a temporary folder.

    Its artifacts go to runs/smoke/seed0/ and its checkpoints to checkpoints/ beside it; data is read from the
    repository's data/ folder, which `make data` prepares. Every test that needs an executed notebook shares this
    one execution."""
    if not (DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.fail("data/ is not prepared: run `make data` (or tools/prepare_data.py) before the tests")
    copy = tmp_path_factory.mktemp("smoke") / NOTEBOOK.name
    shutil.copy(NOTEBOOK, copy)
    execute(copy)
    return copy


# The stages of Question 2, whose files the fp16 rerun removes so that it trains and samples again in fp16.
QUESTION_2_STAGES = ("train_score_model", "sample_images", "test_set_bits_per_dim")


@pytest.fixture(scope="session")
def fp16_rerun_notebook(smoke_notebook) -> Path:
    """The smoke notebook executed a second time in the same folder, with fp16 autocast and the loss scaler forced
    on: Question 1 loads every stage written by the first execution in its own precision, and Question 2, whose
    stage files are removed first, trains and samples again in fp16. The first execution's artifacts and log are
    kept in first_artifacts/ and first_log.txt."""
    folder = smoke_notebook.parent
    shutil.copytree(folder / "runs" / "smoke" / "seed0", folder / "first_artifacts")
    shutil.copy(folder / "checkpoints" / "log.txt", folder / "first_log.txt")
    for path in (folder / "checkpoints").glob("*.pt"):
        if path.name.rsplit("-", 1)[0] in QUESTION_2_STAGES:
            path.unlink()
    copy = smoke_notebook.with_name("fp16_rerun.ipynb")
    shutil.copy(NOTEBOOK, copy)
    execute(copy, ASGN3_MIXED_PRECISION="fp16")
    return copy
