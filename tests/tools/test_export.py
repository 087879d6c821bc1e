"""Tests for tools/export_submission.py (the one-command Crowdmark package).

Most tests use a small synthetic executed notebook built with nbformat; one test uses the ``smoke_notebook``
fixture from tests/conftest.py (the real notebook executed with the fast "smoke" profile). Tests that print PDFs
need Debian's chromium, libjs-mathjax and poppler-utils and are skipped without them; those that launch Chromium
or execute the notebook are marked ``slow``.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import export_submission as exp
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "export_submission.py"

LAST, FIRST = "Doe", "Jane"
PROGRAMMING = ["programming_q1.pdf", "programming_q2.pdf"]
WRITTEN = [f"written_q{i}.pdf" for i in range(1, 5)]
NB_NAME = f"{LAST}_{FIRST}_Assgn3.ipynb"
ALL_FILES = sorted(PROGRAMMING + WRITTEN + [NB_NAME, "pages.json"])

_why_skip = [f"{tool} not installed (apt-get install {package})" for tool, package in
             (("chromium", "chromium"), ("pdfinfo", "poppler-utils"), ("pdftotext", "poppler-utils"))
             if shutil.which(tool) is None]
if not exp.MATHJAX_JS.is_file():
    _why_skip.append("libjs-mathjax not installed (apt-get install libjs-mathjax)")
needs_pdf_tools = pytest.mark.skipif(bool(_why_skip), reason="; ".join(_why_skip))
needs_pdftotext = pytest.mark.skipif(shutil.which("pdftotext") is None,
                                     reason="pdftotext not installed (apt-get install poppler-utils)")

# 120 characters, ruff's line length: must print on one line. LONG_LINE is longer than the page: a code line that
# long fails the export's width check; printed as a cell's output text it wraps, uncut.
FITTING_LINE = f"FIT_START = 1  # {'.' * 95} FIT_END"
assert len(FITTING_LINE) == 120
LONG_LINE = ("very_long_result = some_function_with_a_long_name(argument_number_one=1, argument_number_two=2, "
             "argument_number_three=3, argument_number_four=4, argument_number_five=5, END_OF_LONG_LINE)")
WIDGET_VIEW = {"model_id": "0f3c", "version_major": 2, "version_minor": 0}


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
        new_markdown_cell(f"# Question {q}: Synthetic part {q}\n\nWe minimise $\\|x\\|^2$ over "
                          f"$x \\in \\mathbb{{R}}^d$, and display\n\n"
                          f"$$\\mathcal{{L}}_{q}(w) = \\mathbb{{E}}_{{z}}\\left[\\log D(w + z)\\right].$$"),
        new_code_cell(f"# code of question {q}\n{FITTING_LINE}\nprint('answer {q}')",
                      execution_count=first_count,
                      outputs=[new_output("stream", name="stdout", text=f"answer {q}\n{LONG_LINE}\n"),
                               new_output("display_data", data={"application/vnd.jupyter.widget-view+json":
                                                                WIDGET_VIEW, "text/plain": f"WIDGETTEXT{q} 3/3"})]),
        new_code_cell("plt.plot(x, y); plt.show()", execution_count=first_count + 1, outputs=[
            new_output("display_data", data={"image/png": png, "text/plain": "<Figure size 720x240>"})]),
        new_markdown_cell(f"## Discussion {q}\n\nMarker text QMARK{q} for this part."),
        new_code_cell(f"show_markdown('CODEMARK{q}')", execution_count=first_count + 2,
                      metadata={"tags": [exp.OUTPUT_ONLY_TAG]},
                      outputs=[new_output("display_data", data={"text/markdown": f"Rendered OUTMARK{q}."})]),
    ]


def make_notebook(tmp_path: Path, name: str = "Lastname_Firstname_Asgn3.ipynb", mutate=None) -> Path:
    """An executed notebook: title, configuration, a print-skip cell and an empty one, then the two questions."""
    png = _png_b64()
    cells = [
        new_markdown_cell("**ECE1508 Deep Generative Models — Assignment 3**\n\nSynthetic title cell TITLEMARK."),
        new_code_cell("import numpy as np\nPROFILE = 'smoke'  # SETUPMARK", execution_count=1, outputs=[
            new_output("execute_result", data={"text/plain": "'smoke'"}, execution_count=1)]),
        new_code_cell("def plumbing():  # SKIPMARK\n    pass", execution_count=2,
                      metadata={"tags": [exp.SKIP_TAG]}),
        new_code_cell("", execution_count=None),  # empty cells need not be executed
        *_question_cells(1, png, 3),
        *_question_cells(2, png, 6),
    ]
    widget_state = {"state": {WIDGET_VIEW["model_id"]: {"model_name": "HBoxModel", "model_module_version": "2.0.0",
                                                       "model_module": "@jupyter-widgets/controls", "state": {}}},
                    "version_major": 2, "version_minor": 0}
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "widgets": {"application/vnd.jupyter.widget-state+json": widget_state}})
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


def make_pdf(path: Path, pages: list[str]) -> Path:
    """A PDF with one line of text per page, as Chromium would print it (for the tests with a fake Chromium)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with PdfPages(path) as pdf:
        for text in pages:
            fig = plt.figure(figsize=(8.27, 11.69))
            fig.text(0.1, 0.9, text)
            pdf.savefig(fig)
            plt.close(fig)
    return path


def run_cli(*args, env_extra=None, env_drop=()):
    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def pdf_pages(path: Path) -> int:
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", info, re.MULTILINE).group(1))


def page_text(path: Path, page: int | None = None, layout: bool = True) -> str:
    """pdftotext of one page (1-based) or of the whole document."""
    pages = ["-f", str(page), "-l", str(page)] if page else []
    return subprocess.run(["pdftotext", *(["-layout"] if layout else []), *pages, str(path), "-"],
                          capture_output=True, text=True, check=True).stdout


def pdf_text(path: Path) -> str:
    return re.sub(r"\s+", " ", page_text(path))


def heading_titles(nb_path: Path) -> dict[int, str]:
    """Question number -> first line of its '# Question N' heading, without the '#'."""
    titles = {}
    for cell in nbformat.read(str(nb_path), as_version=4).cells:
        q = exp.question_number(cell)
        if q is not None:
            first_line = cell.source.lstrip().splitlines()[0].lstrip("#").split("$")[0]  # math prints otherwise
            first_line = re.sub(r"[*`]|\[([^\]]*)\]\([^)]*\)", r"\1", first_line)  # emphasis, links
            titles[q] = re.sub(r"\s+", " ", first_line).strip(" :-")
    return titles


def squashed(text: str) -> str:
    """Lower-case letters and digits only, so that line wrapping and hyphenation do not matter."""
    return re.sub(r"[^0-9a-z]", "", text.lower())


def appendix_page(pdf: Path) -> int:
    """The 1-based page on which the appendix heading is printed, read page by page with pdftotext -f/-l."""
    pages = pdf_pages(pdf)
    found = [p for p in range(1, pages + 1) if exp.APPENDIX_HEADING in re.sub(r"\s+", " ", page_text(pdf, p))]
    assert found, f"{pdf.name}: no page shows {exp.APPENDIX_HEADING!r}"
    return found[0]


def check_package(out: Path, nb_path: Path) -> dict[str, str]:
    """Assertions shared by the synthetic and the smoke-notebook export tests: files, order, pages.json."""
    assert sorted(p.name for p in out.iterdir()) == ALL_FILES
    for name in WRITTEN:
        assert pdf_pages(out / name) >= 1, name
    titles = heading_titles(nb_path)
    recorded = json.loads((out / "pages.json").read_text())
    texts = {}
    for q, other in ((1, 2), (2, 1)):
        pdf = out / f"programming_q{q}.pdf"
        first_page = squashed(page_text(pdf, 1))
        assert squashed(f"Question {q}") in first_page and squashed(titles[q]) in first_page, \
            f"{pdf.name} does not open with the heading of Question {q}"
        start = appendix_page(pdf)
        assert start > 1, f"{pdf.name}: the appendix starts on page 1, before the answer"
        assert recorded[pdf.name] == {"answer_pages": start - 1, "appendix_pages": pdf_pages(pdf) - start + 1}
        texts[q] = text = pdf_text(pdf)
        assert squashed(titles[other]) not in squashed(text), f"{pdf.name} contains the heading of Question {other}"
    src = nbformat.read(str(nb_path), as_version=4)
    assert nbformat.read(str(out / NB_NAME), as_version=4).cells == src.cells
    assert (out / NB_NAME).read_bytes() == nb_path.read_bytes()
    return texts


def assert_failed(rc: int, err: str, *needles: str, out: Path | None = None, code: int = 1):
    assert rc == code, err
    for n in needles:
        assert n in err, f"{n!r} not in error message: {err}"
    if out is not None and out.exists():
        assert list(out.iterdir()) == [], f"partial files left: {list(out.iterdir())}"


def export(nb_path: Path, written: Path, out: Path, *extra, last: str = LAST, first: str = FIRST) -> int:
    """Run exp.main in-process with the arguments every direct export test passes, then ``extra``."""
    args = ["--notebook", nb_path, "--written", written, "--out", out, "--last", last, "--first", first, *extra]
    return exp.main([str(a) for a in args])


def fake_chromium(folder: Path, wide: tuple = ()) -> Path:
    """A stand-in for Chromium that copies $PDF_SRC to the --print-to-pdf path and, for --dump-dom, prints a page
    whose width check (tools/export_template/print/width_check.js) reports the elements `wide`."""
    fake = folder / "fake-chromium"
    report = json.dumps({"page": 710, "checked": {"code": 3}, "wide": list(wide)})
    fake.write_text("#!/bin/sh\n"
                    'for a in "$@"; do case "$a" in --print-to-pdf=*) cp "$PDF_SRC" "${a#--print-to-pdf=}";; '
                    f"--dump-dom) echo '<html><body><script type=\"application/json\" id=\"asgn3-width-check\">"
                    f"{report}</script></body></html>';; esac; done\n")
    fake.chmod(0o755)
    return fake


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
    proc = run_cli("--notebook", nb_path, "--written", written, "--out", out, "--keep-html",
                   env_extra={"LAST": LAST, "FIRST": FIRST})
    assert proc.returncode == 0, proc.stderr
    return out, nb_path, proc.stdout


def sources(cells) -> list[str]:
    return [cell.source for cell in cells]


# --------------------------------------------------------------------------- tests
def test_each_question_prints_its_answer_then_the_shared_cells(synthetic):
    nb_path, _ = synthetic
    nb = nbformat.read(str(nb_path), as_version=4)
    shared, answers = exp.question_slices(nb, nb_path)
    # title 0; shared 1..3 (configuration, a print-skip cell, an empty cell); Q1 4..8; Q2 9..13
    assert (list(shared), list(answers[1]), list(answers[2])) == ([1, 2, 3], [4, 5, 6, 7, 8], [9, 10, 11, 12, 13])
    printed = exp.question_notebook(nb, shared, answers[2])
    appendix = printed.cells[5]
    assert sources(printed.cells) == sources(nb.cells[9:14]) + [appendix.source] + sources(nb.cells[1:4])
    assert appendix.source.startswith(f"# {exp.APPENDIX_HEADING}\n") and exp.question_number(appendix) is None
    assert appendix.metadata.tags == [exp.APPENDIX_TAG]
    assert sources(nb.cells) == sources(nbformat.read(str(nb_path), as_version=4).cells)  # the source is untouched
    assert exp.question_number(new_markdown_cell("## Question 1")) is None
    assert exp.question_number(new_markdown_cell("Title, not # Question 1")) is None
    assert exp.question_number(new_code_cell("# Question 1")) is None


def test_html_drops_skipped_cells_prompts_and_the_code_of_output_only_cells(synthetic):
    """The nbconvert configuration, without Chromium: what the print tags and the exporter options do."""
    nb_path, _ = synthetic
    nb = nbformat.read(str(nb_path), as_version=4)
    shared, answers = exp.question_slices(nb, nb_path)
    html, _ = exp.html_exporter("file:///dev/null").from_notebook_node(exp.question_notebook(nb, shared, answers[1]))
    assert "SETUPMARK" in html and "SKIPMARK" not in html and "TITLEMARK" not in html
    assert "OUTMARK1" in html and "CODEMARK1" not in html
    assert 'class="jp-InputPrompt' not in html and 'class="jp-OutputPrompt' not in html
    assert "WIDGETTEXT1 3/3" in html and "widget-view+json" not in html  # a widget prints its text fallback
    assert html.index("QMARK1") < html.index(exp.APPENDIX_HEADING) < html.index("SETUPMARK")
    assert "celltag_print-appendix-heading" in html


def test_a_questions_helper_cells_move_to_its_appendix(synthetic):
    """A cell of the answer tagged print-appendix is printed after the appendix heading, before the shared cells."""
    nb_path, _ = synthetic
    nb = nbformat.read(str(nb_path), as_version=4)
    shared, answers = exp.question_slices(nb, nb_path)
    helper = answers[1][-1]
    nb.cells[helper].metadata["tags"] = [exp.MOVE_TAG]
    cells = exp.question_notebook(nb, shared, answers[1]).cells
    heading = next(i for i, cell in enumerate(cells) if exp.APPENDIX_TAG in cell.metadata.get("tags", []))
    assert cells[heading + 1].source == nb.cells[helper].source and nb.cells[helper] not in cells[:heading]


@pytest.mark.slow
@needs_pdf_tools
def test_export_synthetic(synthetic_export, tmp_path):
    out, nb_path, stdout = synthetic_export
    # --keep-html leaves the HTML next to the PDFs; check it, then check the package without it
    html = {q: (out / f"programming_q{q}.html").read_text(encoding="utf-8") for q in (1, 2)}
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    for p in out.iterdir():
        if p.suffix != ".html":
            shutil.copy(p, pkg / p.name)
    texts = check_package(pkg, nb_path)

    pages = json.loads((pkg / "pages.json").read_text())
    for q in (1, 2):
        h = html[q]
        assert "file:///usr/share/javascript/mathjax/MathJax.js" in h
        assert "cdnjs" not in h and "unpkg" not in h and "require.min.js" not in h  # offline
        assert "white-space: pre-wrap" in h and "size: A4" in h
        assert h.count("<img") == 1  # the figure of the question
        split = pages[f"programming_q{q}.pdf"]
        assert (f"programming_q{q}.pdf: {split['answer_pages']} answer pages, {split['appendix_pages']} appendix "
                "pages") in stdout
        text = texts[q]
        assert "TITLEMARK" not in text and "SKIPMARK" not in text and "CODEMARK" not in text
        assert text.index(f"QMARK{q}") < text.index(f"OUTMARK{q}") < text.index(exp.APPENDIX_HEADING) \
            < text.index("SETUPMARK")
        assert "$" not in text, "math not rendered by MathJax"
        assert "END_OF_LONG_LINE" in text, "long output line cut at the page edge"
        lines = page_text(pkg / f"programming_q{q}.pdf", layout=False).splitlines()
        assert any("FIT_START" in line and "FIT_END" in line for line in lines), \
            f"a {len(FITTING_LINE)}-character code line wraps: make the code font in print.css smaller"
    w, h = map(float, re.search(r"Page size:\s+([\d.]+) x ([\d.]+)", subprocess.run(
        ["pdfinfo", str(pkg / "programming_q1.pdf")], capture_output=True, text=True, check=True).stdout).groups())
    assert abs(w - 595) < 3 and abs(h - 842) < 3, (w, h)


@pytest.mark.slow
@needs_pdf_tools
def test_export_smoke_notebook(smoke_notebook, tmp_path):
    """The real notebook (executed with the smoke profile) exports cleanly, each PDF opening with its question."""
    written = make_written(tmp_path / "written")
    out = tmp_path / "submission"
    proc = run_cli("--notebook", smoke_notebook, "--written", written, "--out", out, "--last", LAST, "--first", FIRST)
    assert proc.returncode == 0, proc.stderr
    check_package(out, smoke_notebook)


@pytest.mark.parametrize("env,args,needle", [
    ({}, [], "Last name is missing"),
    ({"LAST": "Doe"}, [], "First name is missing"),
    ({"LAST": "Doe", "FIRST": ""}, [], "First name is missing"),
    ({}, ["--last", "", "--first", "Jane"], "Last name is missing"),
    ({}, ["--last", "../Doe", "--first", "Jane"], "invalid last name"),
    ({}, ["--last", "Doe", "--first", "Ja ne"], "invalid first name"),
])
def test_bad_names(synthetic, tmp_path, env, args, needle):
    nb_path, written = synthetic
    out = tmp_path / "submission"
    proc = run_cli("--notebook", nb_path, "--written", written, "--out", out, *args, env_extra=env,
                   env_drop=("LAST", "FIRST"))
    assert_failed(proc.returncode, proc.stderr, needle, "make pdfs LAST=Doe FIRST=Jane", out=out, code=2)
    assert not out.exists()


def test_valid_names():
    assert exp.validate_name("O'Brien", "Last", "LAST") == "O'Brien"
    assert exp.validate_name("Smith-Jones", "Last", "LAST") == "Smith-Jones"
    assert exp.validate_name(" Zoë ", "First", "FIRST") == "Zoë"
    for bad in ("a/b", "Doe1", "-Doe", "Doe_", "Do e", "..", "'"):
        with pytest.raises(exp.ExportError):
            exp.validate_name(bad, "Last", "LAST")


def _heading_index(nb, q: int) -> int:
    return next(i for i, cell in enumerate(nb.cells) if exp.question_number(cell) == q)


def _unexecuted(nb):
    nb.cells[5].execution_count = None


def _error_output(nb):
    nb.cells[10].outputs.append(new_output("error", ename="ValueError", evalue="boom", traceback=[]))


def _no_q2(nb):
    nb.cells = nb.cells[:_heading_index(nb, 2)]


def _empty_q2(nb):
    nb.cells = nb.cells[:_heading_index(nb, 2) + 1] + [new_markdown_cell("   ")]


def _dup_q1(nb):
    nb.cells.append(new_markdown_cell("# Question 1 again"))


@pytest.mark.parametrize("mutate,needles", [
    (_unexecuted, ["code cell 5", "not executed"]),
    (_error_output, ["code cell 10", "error output", "ValueError: boom"]),
    (_no_q2, ["Question 2", "missing"]),
    (_empty_q2, ["Question 2", "empty"]),
    (_dup_q1, ["Question 1", "twice"]),
])
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


@needs_pdftotext
def test_publish_with_fake_chromium(synthetic, tmp_path, capsys, monkeypatch):
    """Success path without a real browser: files land in out/, pages are counted, stale renamed notebooks go."""
    nb_path, written = synthetic
    printed = make_pdf(tmp_path / "printed.pdf", ["Question 1", "more of the answer", exp.APPENDIX_HEADING,
                                                  "shared code"])
    out = tmp_path / "submission"
    out.mkdir()
    (out / "Smith_John_Assgn3.ipynb").write_text("{}")
    monkeypatch.setenv("PDF_SRC", str(printed))
    rc = export(nb_path, written, out, "--chromium", fake_chromium(tmp_path), "--mathjax-url", "file:///dev/null")
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == ALL_FILES
    assert "removed stale Smith_John_Assgn3.ipynb" in captured.out
    assert "programming_q2.pdf: 2 answer pages, 2 appendix pages" in captured.out
    assert json.loads((out / "pages.json").read_text()) == {
        name: {"answer_pages": 2, "appendix_pages": 2} for name in PROGRAMMING}
    assert (out / NB_NAME).read_bytes() == nb_path.read_bytes()


@needs_pdftotext
def test_a_print_without_the_appendix_heading_is_refused(synthetic, tmp_path, capsys, monkeypatch):
    nb_path, written = synthetic
    monkeypatch.setenv("PDF_SRC", str(make_pdf(tmp_path / "printed.pdf", ["Question 1", "no appendix"])))
    out = tmp_path / "submission"
    rc = export(nb_path, written, out, "--chromium", fake_chromium(tmp_path), "--mathjax-url", "file:///dev/null")
    assert_failed(rc, capsys.readouterr().err, "programming_q1.pdf", exp.APPENDIX_HEADING, "print template", out=out)
    assert not out.exists()


# ------------------------------------------------------------------- width check: nothing clipped or wrapped
# Each is measured by tools/export_template/print/width_check.js in Chromium at the printed width, 188 mm = 710 px.
LINE_121 = f"TOO_WIDE = 1  # {'.' * 97} END_121"  # one character over ruff's length: print.css would wrap it
assert len(LINE_121) == 121
WIDE_EQUATION = "$$\\text{" + "an equation that MathJax cannot break, " * 4 + "}$$"  # no break inside \text
BREAKABLE_EQUATION = "$$" + " + ".join(f"\\frac{{a_{{{i}}}}}{{b_{{{i}}}}}" for i in range(30)) + "$$"  # MathJax
FITTING_TABLE = ("| " + " | ".join(f"column {i}" for i in range(8)) + " |\n|" + "---|" * 8 + "\n| "  # breaks it
                 + " | ".join(str(i) for i in range(8)) + " |")
WIDE_TABLE = ("| " + " | ".join(f"a_long_column_heading_{i}" for i in range(10)) + " |\n|" + "---|" * 10 + "\n| "
              + " | ".join(str(i) for i in range(10)) + " |")
DISCUSSION_1, CONFIGURATION = 7, 1  # cells of make_notebook: Question 1's discussion, the shared configuration


def _append(index: int, text: str):
    def mutate(nb):
        nb.cells[index].source += text
    return mutate


def test_the_print_html_carries_the_width_check(synthetic):
    nb_path, _ = synthetic
    nb = nbformat.read(str(nb_path), as_version=4)
    shared, answers = exp.question_slices(nb, nb_path)
    html, _ = exp.html_exporter("file:///dev/null").from_notebook_node(exp.question_notebook(nb, shared, answers[1]))
    assert 'mark.id = MARK_ID' in html and '"asgn3-width-check"' in html and "width: 188mm" in html
    assert f'id="cell-id={nb.cells[CONFIGURATION].id}"' in html  # how the check names a cell


def test_width_problems_name_each_cell_once_with_its_index_and_first_line(synthetic):
    nb = nbformat.read(str(synthetic[0]), as_version=4)
    config, discussion = nb.cells[CONFIGURATION].id, nb.cells[DISCUSSION_1].id
    code = {"kind": "code", "cell": config, "width": 702, "room": 697}
    reports = {"programming_q1.pdf": {"page": 710, "checked": {}, "wide": [
                   code, {"kind": "equation", "cell": discussion, "width": 900, "room": 706},
                   {"kind": "table", "cell": discussion, "width": 800, "room": 706},
                   {"kind": "table", "cell": "not-a-notebook-cell", "width": 750, "room": 706}]},
               "programming_q2.pdf": {"page": 710, "checked": {}, "wide": [code]}}
    lines = exp.width_problems(nb, reports).splitlines()
    assert lines == [
        "  cell 1 (code, first line: 'import numpy as np'): code line 2 (30 characters) 702 px wide, 697 px of room "
        "on the 710 px page [in programming_q1.pdf, programming_q2.pdf]",
        "  cell 7 (markdown, first line: '## Discussion 1'): display equation 900 px wide, 706 px of room on the "
        "710 px page; table 800 px wide, 706 px of room on the 710 px page [in programming_q1.pdf]",
        "  the generated appendix heading: table 750 px wide, 706 px of room on the 710 px page "
        "[in programming_q1.pdf]"]
    assert exp.width_problems(nb, {"programming_q1.pdf": {"page": 710, "checked": {"code": 5}, "wide": []}}) == ""


def test_cells_without_ids_get_them_for_the_width_check(synthetic):
    nb = nbformat.read(str(synthetic[0]), as_version=4)
    assert exp.with_cell_ids(nb) is nb  # nbformat 4.5: ids already there
    for cell in nb.cells:
        cell.pop("id")
    named = exp.with_cell_ids(nb)
    assert [cell.id for cell in named.cells] == [f"cell-{i}" for i in range(len(nb.cells))]
    assert "id" not in nb.cells[0] and sources(named.cells) == sources(nb.cells)


@needs_pdftotext
def test_a_too_wide_element_fails_the_export_naming_its_cell(synthetic, tmp_path, capsys, monkeypatch):
    """Without a browser: the fake Chromium's width check reports a table too wide; nothing is written."""
    nb_path, written = synthetic
    nb = nbformat.read(str(nb_path), as_version=4)
    monkeypatch.setenv("PDF_SRC", str(make_pdf(tmp_path / "printed.pdf", ["Question 1", exp.APPENDIX_HEADING])))
    wide = [{"kind": "table", "cell": nb.cells[DISCUSSION_1].id, "width": 812, "room": 706}]
    out = tmp_path / "submission"
    rc = export(nb_path, written, out, "--chromium", fake_chromium(tmp_path, wide), "--mathjax-url", "file:///dev/null")
    assert_failed(rc, capsys.readouterr().err, "wider than the printed page", "cell 7 (markdown, first line: "
                  "'## Discussion 1'): table 812 px wide, 706 px of room on the 710 px page", out=out)
    assert not out.exists()


@needs_pdftotext
def test_a_page_whose_width_check_did_not_report_is_refused(synthetic, tmp_path, capsys, monkeypatch):
    """No report in the DOM (MathJax still typesetting when Chromium's virtual time ran out, or another template)."""
    nb_path, written = synthetic
    monkeypatch.setenv("PDF_SRC", str(make_pdf(tmp_path / "printed.pdf", ["Question 1", exp.APPENDIX_HEADING])))
    silent = tmp_path / "silent-chromium"
    silent.write_text('#!/bin/sh\nfor a in "$@"; do case "$a" in --print-to-pdf=*) cp "$PDF_SRC" '
                      '"${a#--print-to-pdf=}";; --dump-dom) echo "<html><body></body></html>";; esac; done\n')
    silent.chmod(0o755)
    out = tmp_path / "submission"
    rc = export(nb_path, written, out, "--chromium", silent, "--mathjax-url", "file:///dev/null")
    assert_failed(rc, capsys.readouterr().err, "programming_q1.pdf: the width check did not report", out=out)


@pytest.mark.slow
@needs_pdf_tools
@pytest.mark.parametrize("mutate,needles", [
    (_append(DISCUSSION_1, f"\n\n{WIDE_EQUATION}"),
     ["cell 7 (markdown, first line: '## Discussion 1'): display equation", "[in programming_q1.pdf]"]),
    (_append(CONFIGURATION, f"\n{LINE_121}"),
     ["cell 1 (code, first line: 'import numpy as np'): code line 3 (121 characters)",
      "[in programming_q1.pdf, programming_q2.pdf]"]),  # a shared cell, printed in both, named once
    (_append(DISCUSSION_1, f"\n\n{WIDE_TABLE}"), ["cell 7 (markdown, first line: '## Discussion 1'): table"]),
], ids=["equation", "code-line-121", "table"])
def test_export_fails_on_what_is_wider_than_the_page(tmp_path, capsys, mutate, needles):
    nb_path = make_notebook(tmp_path, mutate=mutate)
    out = tmp_path / "submission"
    rc = export(nb_path, make_written(tmp_path / "written"), out)
    err = capsys.readouterr().err
    assert_failed(rc, err, "wider than the printed page", *needles, out=out)
    assert len([line for line in err.splitlines() if line.startswith("  cell ")]) == 1, err
    width, room = map(int, re.search(r"(\d+) px wide, (\d+) px of room on the 710 px page", err).groups())
    assert width > room
    assert not out.exists()


@pytest.mark.slow
@needs_pdf_tools
def test_export_passes_what_fits_the_page(tmp_path, capsys):
    """A 120-character code line (make_notebook's), a table of eight columns and an equation that MathJax breaks
    at the page width print whole: the width check measures them and lets the export through."""
    nb_path = make_notebook(tmp_path, mutate=_append(DISCUSSION_1, f"\n\n{FITTING_TABLE}\n\n{BREAKABLE_EQUATION}"))
    out = tmp_path / "submission"
    rc = export(nb_path, make_written(tmp_path / "written"), out)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert re.search(r"programming_q1\.pdf: .*; width check: 2 display equations, 1 table, \d+ code cells measured, "
                     r"all within the 710 px page", captured.out), captured.out
    lines = page_text(out / "programming_q1.pdf", layout=False).splitlines()
    assert any("FIT_START" in line and "FIT_END" in line for line in lines)
