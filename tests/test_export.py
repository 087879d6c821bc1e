"""Tests for tools/export_submission.py (the one-command Crowdmark package).

Most tests use a small synthetic executed notebook built with nbformat; one test
uses the ``smoke_notebook`` fixture from tests/conftest.py (the real notebook
executed with the fast "smoke" profile). Tests that print PDFs need Debian's
chromium, libjs-mathjax and poppler-utils and are skipped without them.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "export_submission.py"

_spec = importlib.util.spec_from_file_location("export_submission", SCRIPT)
exp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(exp)

LAST, FIRST = "Doe", "Jane"
PROGRAMMING = ["programming_q1.pdf", "programming_q2.pdf"]
WRITTEN = [f"written_q{i}.pdf" for i in range(1, 5)]
NB_NAME = f"{LAST}_{FIRST}_Assgn3.ipynb"
ALL_FILES = sorted(PROGRAMMING + WRITTEN + [NB_NAME])

_missing_tools = [t for t in ("pdfinfo", "pdftotext") if shutil.which(t) is None]
_chromium = next((shutil.which(n) for n in exp.CHROMIUM_NAMES if shutil.which(n)), None)
_why_skip = []
if _chromium is None:
    _why_skip.append("chromium not installed (apt-get install chromium)")
if not exp.MATHJAX_JS.is_file():
    _why_skip.append("libjs-mathjax not installed (apt-get install libjs-mathjax)")
if _missing_tools:
    _why_skip.append(
        f"{', '.join(_missing_tools)} not installed (apt-get install poppler-utils)"
    )
needs_pdf_tools = pytest.mark.skipif(bool(_why_skip), reason="; ".join(_why_skip))

LONG_LINE = (
    "very_long_result = some_function_with_a_long_name(argument_number_one=1, argument_number_two=2, "
    "argument_number_three=3, argument_number_four=4, argument_number_five=5, END_OF_LONG_LINE)"
)


# ----------------------------------------------------------------------------- helpers
def _png_b64() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3), dpi=80)
    ax.plot([0, 1, 2, 3], [0, 1, 4, 9], label="loss")
    ax.set_title("synthetic figure")
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _question_cells(q: int, png: str, first_count: int) -> list:
    return [
        new_markdown_cell(
            f"# Question {q}: Synthetic part {q}\n\n"
            f"We minimise $\\|x\\|^2$ over $x \\in \\mathbb{{R}}^d$, and display\n\n"
            f"$$\\mathcal{{L}}_{q}(w) = \\mathbb{{E}}_{{z}}\\left[\\log D(w + z)\\right].$$"
        ),
        new_code_cell(
            f"# code of question {q}\n{LONG_LINE}\nprint('answer {q}')",
            execution_count=first_count,
            outputs=[new_output("stream", name="stdout", text=f"answer {q}\n")],
        ),
        new_code_cell(
            "plt.plot(x, y); plt.show()",
            execution_count=first_count + 1,
            outputs=[
                new_output(
                    "display_data",
                    data={"image/png": png, "text/plain": "<Figure size 720x240>"},
                ),
            ],
        ),
        new_markdown_cell(f"## Discussion {q}\n\nMarker text QMARK{q} for this part."),
    ]


def make_notebook(
    tmp_path: Path, name: str = "Lastname_Firstname_Asgn3.ipynb", mutate=None
) -> Path:
    png = _png_b64()
    cells = [
        new_markdown_cell(
            "**ECE1508 Deep Generative Models — Assignment 3**\n\nSynthetic title cell TITLEMARK."
        ),
        new_code_cell(
            "import numpy as np\nPROFILE = 'smoke'",
            execution_count=1,
            outputs=[
                new_output(
                    "execute_result", data={"text/plain": "'smoke'"}, execution_count=1
                )
            ],
        ),
        new_code_cell("", execution_count=None),  # empty cells need not be executed
        *_question_cells(1, png, 2),
        *_question_cells(2, png, 4),
    ]
    nb = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {
                "name": "python3",
                "display_name": "Python 3",
                "language": "python",
            }
        },
    )
    if mutate:
        mutate(nb)
    nbformat.validate(nb)
    path = tmp_path / name
    nbformat.write(nb, str(path))
    return path


def make_written(folder: Path, skip: tuple = ()) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 5):
        if i in skip:
            continue
        fig = plt.figure(figsize=(8.27, 11.69))
        fig.text(0.1, 0.9, f"Written answer {i}")
        fig.savefig(folder / f"q{i}.pdf")
        plt.close(fig)
    return folder


def run_cli(*args, env_extra=None, env_drop=()):
    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def pdf_pages(path: Path) -> int:
    info = subprocess.run(
        ["pdfinfo", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return int(re.search(r"^Pages:\s+(\d+)", info, re.MULTILINE).group(1))


def pdf_text(path: Path) -> str:
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return re.sub(r"\s+", " ", text)


def heading_titles(nb_path: Path) -> dict[int, str]:
    """Question number -> first line of its '# Question N' heading, without the '#'."""
    nb = nbformat.read(str(nb_path), as_version=4)
    titles = {}
    for cell in nb.cells:
        q = exp.question_number(cell)
        if q is not None:
            first_line = "".join(cell.source).lstrip().splitlines()[0].lstrip("#")
            first_line = first_line.split("$")[
                0
            ]  # math renders differently in the PDF text
            first_line = re.sub(
                r"[*`]|\[([^\]]*)\]\([^)]*\)", r"\1", first_line
            )  # emphasis, links
            titles[q] = re.sub(r"\s+", " ", first_line).strip(" :-")
    return titles


def squashed(text: str) -> str:
    """Lower-case letters and digits only, so that line wrapping and hyphenation do not matter."""
    return re.sub(r"[^0-9a-z]", "", text.lower())


def check_package(out: Path, nb_path: Path) -> dict[str, str]:
    """Assertions shared by the synthetic and the smoke-notebook export tests."""
    assert sorted(p.name for p in out.iterdir()) == ALL_FILES
    for name in PROGRAMMING + WRITTEN:
        assert pdf_pages(out / name) >= 1, name
    titles = heading_titles(nb_path)
    texts = {}
    for q, other in ((1, 2), (2, 1)):
        text = pdf_text(out / f"programming_q{q}.pdf")
        texts[f"q{q}"] = text
        assert f"Question {q}" in text
        # compare letters and digits only: a long heading wraps, and a wrapped "reverse-time" loses its hyphen
        assert squashed(titles[q]) in squashed(text)
        assert squashed(titles[other]) not in squashed(text), (
            f"programming_q{q}.pdf contains the heading of Question {other}"
        )
    src = nbformat.read(str(nb_path), as_version=4)
    copy = nbformat.read(str(out / NB_NAME), as_version=4)
    nbformat.validate(copy)
    assert copy.cells == src.cells
    assert (out / NB_NAME).read_bytes() == nb_path.read_bytes()
    return texts


def assert_failed(
    rc: int, err: str, *needles: str, out: Path | None = None, code: int = 1
):
    assert rc == code, err
    for n in needles:
        assert n in err, f"{n!r} not in error message: {err}"
    if out is not None and out.exists():
        assert list(out.iterdir()) == [], f"partial files left: {list(out.iterdir())}"


def export(nb_path: Path, written: Path, out: Path, *extra, last: str = LAST, first: str = FIRST) -> int:
    """Run exp.main in-process with the arguments every direct export test passes, then ``extra``."""
    args = ["--notebook", nb_path, "--written", written, "--out", out, "--last", last, "--first", first, *extra]
    return exp.main([str(a) for a in args])


# ------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synthetic")
    return make_notebook(tmp), make_written(tmp / "written")


@pytest.fixture(scope="module")
def synthetic_export(synthetic, tmp_path_factory):
    if _why_skip:
        pytest.skip("; ".join(_why_skip))
    nb_path, written = synthetic
    out = tmp_path_factory.mktemp("export") / "submission"
    proc = run_cli(
        "--notebook",
        nb_path,
        "--written",
        written,
        "--out",
        out,
        "--keep-html",
        env_extra={"LAST": LAST, "FIRST": FIRST},
    )
    assert proc.returncode == 0, proc.stderr
    return out, nb_path


# --------------------------------------------------------------------------- tests
def test_slicing(synthetic):
    nb_path, _ = synthetic
    nb = nbformat.read(str(nb_path), as_version=4)
    slices = exp.slice_notebook(nb, nb_path)
    # preamble = title, setup, empty cell (0..2); Q1 = 3..6; Q2 = 7..10
    assert slices[1] == [0, 1, 2, 3, 4, 5, 6]
    assert slices[2] == [0, 1, 2, 7, 8, 9, 10]
    assert exp.question_number(new_markdown_cell("## Question 1")) is None
    assert exp.question_number(new_markdown_cell("Title, not # Question 1")) is None
    assert exp.question_number(new_code_cell("# Question 1")) is None


@needs_pdf_tools
def test_export_synthetic(synthetic_export, tmp_path):
    out, nb_path = synthetic_export
    # --keep-html leaves the HTML next to the PDFs; check it, then check the package without it
    html = {
        q: (out / f"programming_q{q}.html").read_text(encoding="utf-8") for q in (1, 2)
    }
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    for p in out.iterdir():
        if p.suffix != ".html":
            shutil.copy(p, pkg / p.name)
    texts = check_package(pkg, nb_path)

    for q in (1, 2):
        h = html[q]
        assert "file:///usr/share/javascript/mathjax/MathJax.js" in h
        assert (
            "cdnjs" not in h and "unpkg" not in h and "require.min.js" not in h
        )  # offline
        assert "white-space: pre-wrap" in h and "size: A4" in h
        assert h.count("<img") == 1  # the figure of the question
        assert f"QMARK{3 - q}" not in h
    for q, text in texts.items():
        assert "TITLEMARK" in text  # title cell first in every PDF
        assert text.index("TITLEMARK") < text.index("Question")
        assert f"QMARK{q[1]}" in text
        assert "$" not in text, "math not rendered by MathJax"
        assert "END_OF_LONG_LINE" in text, "long code line cut at the page edge"
    # A4 pages
    info = subprocess.run(
        ["pdfinfo", str(pkg / "programming_q1.pdf")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    w, h = map(float, re.search(r"Page size:\s+([\d.]+) x ([\d.]+)", info).groups())
    assert abs(w - 595) < 3 and abs(h - 842) < 3, info


@needs_pdf_tools
def test_export_smoke_notebook(smoke_notebook, tmp_path):
    """The real notebook (executed with the smoke profile) exports cleanly."""
    written = make_written(tmp_path / "written")
    out = tmp_path / "submission"
    proc = run_cli("--notebook", smoke_notebook, "--written", written, "--out", out, "--last", LAST, "--first", FIRST)
    assert proc.returncode == 0, proc.stderr
    check_package(out, smoke_notebook)


@pytest.mark.parametrize(
    "env,args,needle",
    [
        ({}, [], "Last name is missing"),
        ({"LAST": "Doe"}, [], "First name is missing"),
        ({"LAST": "Doe", "FIRST": ""}, [], "First name is missing"),
        ({}, ["--last", "", "--first", "Jane"], "Last name is missing"),
        ({}, ["--last", "../Doe", "--first", "Jane"], "invalid last name"),
        ({}, ["--last", "Doe", "--first", "Ja ne"], "invalid first name"),
    ],
)
def test_bad_names(synthetic, tmp_path, env, args, needle):
    nb_path, written = synthetic
    out = tmp_path / "submission"
    proc = run_cli(
        "--notebook", nb_path, "--written", written, "--out", out,
        *args,
        env_extra=env,
        env_drop=("LAST", "FIRST"),
    )
    assert_failed(
        proc.returncode,
        proc.stderr,
        needle,
        "make pdfs LAST=Doe FIRST=Jane",
        out=out,
        code=2,
    )
    assert not out.exists()


def test_valid_names():
    assert exp.validate_name("O'Brien", "Last", "LAST") == "O'Brien"
    assert exp.validate_name("Smith-Jones", "Last", "LAST") == "Smith-Jones"
    assert exp.validate_name(" Zoë ", "First", "FIRST") == "Zoë"
    for bad in ("a/b", "Doe1", "-Doe", "Doe_", "Do e", "..", "'"):
        with pytest.raises(exp.ExportError):
            exp.validate_name(bad, "Last", "LAST")


def _unexecuted(nb):
    nb.cells[4].execution_count = None


def _error_output(nb):
    nb.cells[8].outputs.append(
        new_output("error", ename="ValueError", evalue="boom", traceback=[])
    )


def _no_q2(nb):
    nb.cells = nb.cells[:7]


def _empty_q2(nb):
    nb.cells = nb.cells[:8] + [new_markdown_cell("   ")]


def _dup_q1(nb):
    nb.cells.append(new_markdown_cell("# Question 1 again"))


@pytest.mark.parametrize(
    "mutate,needles",
    [
        (_unexecuted, ["code cell 4", "not executed"]),
        (_error_output, ["code cell 8", "error output", "ValueError: boom"]),
        (_no_q2, ["Question 2", "missing"]),
        (_empty_q2, ["Question 2", "empty"]),
        (_dup_q1, ["Question 1", "twice"]),
    ],
)
def test_bad_notebook(tmp_path, capsys, mutate, needles):
    nb_path = make_notebook(tmp_path, mutate=mutate)
    written = make_written(tmp_path / "written")
    out = tmp_path / "submission"
    rc = export(nb_path, written, out)
    assert_failed(rc, capsys.readouterr().err, *needles, out=out)


def test_missing_notebook(tmp_path, capsys):
    rc = export(tmp_path / "nope.ipynb", tmp_path, tmp_path / "submission")
    assert_failed(rc, capsys.readouterr().err, "nope.ipynb", "not found", out=tmp_path / "submission")


def test_missing_written_pdf(synthetic, tmp_path, capsys):
    nb_path, _ = synthetic
    written = make_written(tmp_path / "written", skip=(3,))
    out = tmp_path / "submission"
    rc = export(nb_path, written, out)
    assert_failed(rc, capsys.readouterr().err, str(written / "q3.pdf"), "make written", out=out)


def test_missing_chromium(synthetic, tmp_path, capsys):
    nb_path, written = synthetic
    out = tmp_path / "submission"
    rc = export(nb_path, written, out, "--chromium", tmp_path / "no-such-chromium")
    assert_failed(rc, capsys.readouterr().err, "apt-get install chromium libjs-mathjax", out=out)


def test_chromium_failure_leaves_nothing(synthetic, tmp_path, capsys):
    """A failure after rendering started (here: printing) leaves no partial files."""
    nb_path, written = synthetic
    fake = tmp_path / "fake-chromium"
    fake.write_text("#!/bin/sh\necho 'simulated crash' >&2\nexit 3\n")
    fake.chmod(0o755)
    out = tmp_path / "submission"
    out.mkdir()
    (out / "keep.txt").write_text("pre-existing")
    rc = export(nb_path, written, out, "--chromium", fake, "--mathjax-url", "file:///dev/null")
    assert_failed(rc, capsys.readouterr().err, "chromium failed", "simulated crash")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_publish_with_fake_chromium(synthetic, tmp_path, capsys, monkeypatch):
    """Success path without a real browser: files land in out/, stale renamed notebooks go."""
    nb_path, written = synthetic
    fake = tmp_path / "fake-chromium"
    fake.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case "$a" in --print-to-pdf=*) cp "$PDF_SRC" "${a#--print-to-pdf=}";; esac; done\n'
    )
    fake.chmod(0o755)
    out = tmp_path / "submission"
    out.mkdir()
    (out / "Smith_John_Assgn3.ipynb").write_text("{}")
    monkeypatch.setenv("PDF_SRC", str(written / "q1.pdf"))
    rc = export(nb_path, written, out, "--chromium", fake, "--mathjax-url", "file:///dev/null")
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == ALL_FILES
    assert "removed stale Smith_John_Assgn3.ipynb" in captured.out
    assert (out / NB_NAME).read_bytes() == nb_path.read_bytes()
