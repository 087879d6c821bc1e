"""Tests for tools/screenshot_notebook.py: the notebook opened in JupyterLab in headless Chromium (issue 34).

The end-to-end tests start JupyterLab and Chromium (about 25 s each) and are marked ``slow``; they are skipped
without Debian's chromium or pip's jupyterlab.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import screenshot_notebook as shot

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "screenshot_notebook.py"

_why_skip = ([] if shutil.which("chromium") else ["chromium not installed (apt-get install chromium)"]) + (
    [] if importlib.util.find_spec("jupyterlab") else ["jupyterlab not installed (pip install jupyterlab)"])
needs_lab = pytest.mark.skipif(bool(_why_skip), reason="; ".join(_why_skip))


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def run_tool(notebook: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--notebook", str(notebook), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=300, check=False)


def cell(source: str, cell_type: str = "code", **metadata) -> dict:
    return {"cell_type": cell_type, "source": source, "metadata": metadata}


def test_folding_problems_name_the_cells_shown_otherwise_than_marked():
    notebook = {"cells": [
        cell("#@title Set-up\nimport os", cellView="form", jupyter={"source_hidden": True}),  # folded, shown so
        cell("#@title Colab only\nx = 1", cellView="form"),                  # a form cell without source_hidden
        cell("y = 2", jupyter={"source_hidden": True}),                       # marked, but its source shows
        cell("# Heading", "markdown"),                                        # shown folded, marked nothing
        cell(["z = 3\n", "print(z)"]),                                       # open, as marked
    ]}
    folded, shut = {"placeholder": True, "editor": False}, {"placeholder": False, "editor": True}
    count, problems = shot.folding_problems(notebook, [folded, shut, shut, folded, shut])
    assert count == 3
    assert problems == [
        "cell 1 ('#@title Colab only'): JupyterLab shows its source, though it is marked \"cellView\": \"form\" and "
        "#@title, and lacks \"jupyter\": {\"source_hidden\": true}",
        "cell 2 ('y = 2'): JupyterLab shows its source, though it is marked source_hidden",
        "cell 3 ('# Heading'): JupyterLab shows it folded, though nothing marks it so",
    ]
    with pytest.raises(ValueError):  # a page that shows another number of cells is not compared
        shot.folding_problems(notebook, [folded])


@pytest.mark.slow
@needs_lab
def test_the_notebook_opens_with_its_marked_cells_folded(tmp_path):
    notebook = tmp_path / shot.NOTEBOOK.name
    shutil.copyfile(shot.NOTEBOOK, notebook)
    before = notebook.read_bytes()
    out = tmp_path / "screens"
    proc = run_tool(notebook, out)
    assert proc.returncode == 0, proc.stderr
    folded = sum(bool(shot.folding_marks(c)) for c in json.loads(notebook.read_text())["cells"])
    assert folded > 0 and f"all {folded} cells marked folded" in proc.stdout, proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["screen-1.png", "screen-2.png", "screen-3.png"]
    assert all(png_size(out / f"screen-{i}.png") == (1280, 1600) for i in (1, 2, 3))
    assert notebook.read_bytes() == before  # JupyterLab opened a copy: nothing saved over the notebook


@pytest.mark.slow
@needs_lab
def test_a_form_cell_left_open_is_named(tmp_path):
    """The DOM check sees an open source: a #@title cell without source_hidden fails the run, and only it."""
    nb = json.loads(shot.NOTEBOOK.read_text(encoding="utf-8"))
    index = next(i for i, c in enumerate(nb["cells"]) if len(shot.folding_marks(c)) > 1)  # a form, folded
    del nb["cells"][index]["metadata"]["jupyter"]["source_hidden"]
    notebook = tmp_path / "unfolded.ipynb"
    notebook.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    before = notebook.read_bytes()
    proc = run_tool(notebook, tmp_path / "screens", "--screens", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    named = [line for line in proc.stderr.splitlines() if line.startswith("  cell ")]
    assert len(named) == 1 and named[0].startswith(f"  cell {index} ("), proc.stderr
    assert "JupyterLab shows its source" in named[0] and 'lacks "jupyter": {"source_hidden": true}' in named[0]
    assert notebook.read_bytes() == before
    assert png_size(tmp_path / "screens" / "screen-1.png") == (1280, 1600)
