"""The figure audit that runs in the kernel while the tests execute the notebook (tests/support/notebook_audit.py)
must find what it is there to find: overlapping labels, text too small at print size, a legend over the data."""
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
import notebook_audit  # noqa: E402


def test_a_clean_figure_passes():
    fig, ax = plt.subplots(figsize=(6, 3), dpi=80)
    ax.plot([0, 1, 2], [0, 1, 0], label="data")
    ax.set(title="A clean figure", xlabel="x", ylabel="y")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    assert notebook_audit.audit_figure(fig) == []
    plt.close(fig)


def test_a_crowded_figure_fails_on_each_count():
    fig, ax = plt.subplots(figsize=(3, 2), dpi=80)
    ax.set_xticks(range(6), [f"t = 0.{i}\ns = {i}.37" for i in range(6)])    # six long labels on 3 inches
    ax.text(0.5, 0.9, "a note at 6 pt", fontsize=6)                      # prints at 5 pt
    ax.plot([2.4, 2.6], [0.5, 0.5], "o", label="covered points")
    ax.set(xlim=(-0.5, 5.5), ylim=(0, 1))
    ax.legend(loc="center", fontsize=10)
    problems = "\n".join(notebook_audit.audit_figure(fig))
    assert "prints at" in problems, problems
    assert "overlap" in problems, problems
    assert "covers 2 plotted points" in problems, problems
    plt.close(fig)


def test_the_printed_scale_follows_the_export():
    """Up to 710 CSS px (the page) a figure prints at 80 px per inch of its own: 80/96 of its size; beyond, it is
    scaled down to the page."""
    fig = plt.figure(figsize=(5, 2), dpi=80)
    fig.text(0.1, 0.5, "x")
    renderer = fig.canvas.get_renderer()
    assert abs(notebook_audit.printed_scale(fig, renderer) - 80 / 96) < 1e-6
    plt.close(fig)


@pytest.mark.filterwarnings("ignore:internal:DeprecationWarning")
def test_a_warning_from_the_notebooks_own_call_becomes_an_error():
    """Code compiled as ipykernel compiles a cell (/tmp/ipykernel_<pid>/<n>.py) that makes a library warn, as numpy
    does for a tensor passed to imshow, fails; the same warning from library code alone is only shown."""
    import warnings

    saved = warnings.showwarning, warnings.filters[:]
    try:
        notebook_audit.raise_for_notebook_warnings()
        cell = compile("import warnings\nwarnings.warn('`__array__` does not accept a copy', DeprecationWarning)",
                       "/tmp/ipykernel_1/1.py", "exec")
        try:
            exec(cell, {})
        except RuntimeError as error:
            assert "a warning raised by the notebook's own call: DeprecationWarning" in str(error)
        else:
            raise AssertionError("the warning from a notebook cell passed silently")
        library = compile("import warnings\nwarnings.warn('internal', DeprecationWarning)", "/usr/lib/lib.py", "exec")
        exec(library, {})                              # no error: a library's own warning is only shown
    finally:
        warnings.showwarning, warnings.filters[:] = saved
