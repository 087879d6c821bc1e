#!/usr/bin/env python3
"""Build the Crowdmark submission package in one command.

Writes into ``--out`` (``submission/``):

* ``programming_qN.pdf``: the executed notebook's Question N, answer first: from its ``# Question N`` heading up
  to the next ``# Question`` heading or the end, then, from a new page, an appendix: the question's helper cells
  tagged ``print-appendix`` and the cells before the first question (configuration and shared code) but the title
  cell.
* ``pages.json``: the answer pages and appendix pages of each (also printed).
* ``written_q1.pdf`` ... ``written_q4.pdf``: copies of ``written/q1.pdf`` ...
* ``<Last>_<First>_Assgn3.ipynb``: the executed notebook, byte-identical, under the name the assignment asks for.

nbconvert does the notebook work: its TagRemovePreprocessor drops ``print-skip`` cells and the code of
``print-output-only`` cells (discussions whose code only formats the run's numbers), its RegexRemovePreprocessor
drops blank cells, its exporter options drop the prompts, and the template in ``tools/export_template/print``
renders offline HTML with Debian's MathJax and the print CSS. Headless Chromium prints the HTML to A4; poppler's
``pdftotext`` finds the page where the appendix starts. Files are made in a temporary folder and moved into
``--out`` once all exist.

Nothing is clipped, and no code line wraps: in the same Chromium run, before printing, the template lays the page
out at the printed width (188 mm; MathJax breaks long equations at it) and its ``width_check.js`` records every
display equation and table that runs past the page and every code line that would wrap; the export then fails,
naming each such cell (its index in the notebook and its first line). Output text still wraps, uncut.

Usage: ``python tools/export_submission.py --last Doe --first Jane`` (default: env LAST, FIRST; see --help).
Exit status: 0 success, 2 missing or invalid names, 1 any other error.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from traitlets.config import Config

TEMPLATE_DIR = Path(__file__).resolve().parent / "export_template"
QUESTIONS = (1, 2)
WRITTEN = (1, 2, 3, 4)
SKIP_TAG = "print-skip"                # plumbing the notebook explains in prose
OUTPUT_ONLY_TAG = "print-output-only"  # discussions: print the rendered text, not the code that formats it
APPENDIX_TAG = "print-appendix-heading"  # the generated appendix heading; print.css starts a page there
MOVE_TAG = "print-appendix"             # a question's helper cell, printed in its appendix instead of its answer
APPENDIX_HEADING = "Appendix: helpers and shared code"
HELPERS_TEXT = ("First the helpers of this question (measurement and figure code), which the notebook runs where they "
                "stand; then")
SHARED_TEXT = ("the configuration and the code both questions share (training loop, optimiser, weight averaging, data "
               "loading and checks, the classifier and FID), which the notebook runs before the questions. Left out: "
               "the caching of stages, the checkpoint and file plumbing and the table and figure helpers, which the "
               "notebook's folded set-up cells hold.")

MATHJAX_JS = Path("/usr/share/javascript/mathjax/MathJax.js")
MATHJAX_CONFIG = "TeX-AMS_CHTML-full,Safe"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_TIMEOUT_S = 180
CHROMIUM_VIRTUAL_TIME_MS = 20000  # MathJax typesets within it; the width check reports once it has
WIDTH_MARK_RE = re.compile(r'<script[^>]*\bid="asgn3-width-check"[^>]*>(.*?)</script>', re.DOTALL)  # width_check.js
WIDTH_KINDS = {"equation": ("display equation", "display equations"), "table": ("table", "tables"),  # one, many
               "code": ("code line", "code cells"), "code block": ("code block in text", "code blocks in text")}
APT_HINT = "install it with: apt-get install chromium libjs-mathjax poppler-utils  (or: make sysdeps, as root)"
NAME_HINT = "pass them as: make pdfs LAST=Doe FIRST=Jane  (or --last Doe --first Jane, or env LAST/FIRST)"

HEADING_RE = re.compile(r"#[ \t]+Question[ \t]+(\d+)\b")  # "# Question N", not "## ..."
NAME_RE = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")


class ExportError(Exception):
    """A problem the user must fix; the message says how."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def validate_name(value: str | None, what: str, env: str) -> str:
    """The name as given on Quercus, stripped; letters with inner hyphens or apostrophes only (it names a file)."""
    value = (value or "").strip()
    if not value:
        raise ExportError(f"{what} name is missing (--{what.lower()} or env {env} is empty); {NAME_HINT}", code=2)
    if not NAME_RE.fullmatch(value):
        raise ExportError(f"invalid {what.lower()} name {value!r}: use letters, hyphens and apostrophes only (no "
                          f"spaces, digits or slashes), exactly as displayed on Quercus; {NAME_HINT}", code=2)
    return value


def load_executed_notebook(path: Path):
    """The notebook at `path`, refused unless every non-empty code cell ran without an error output."""
    if not path.is_file():
        raise ExportError(f"notebook not found: {path} (run the notebook first, e.g. `make run`)")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises several kinds
        raise ExportError(f"cannot read notebook {path}: {exc}") from exc
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.source.strip() and cell.get("execution_count") is None:
            raise ExportError(f"{path}: code cell {index} was not executed (execution_count is None); run the "
                              "whole notebook top to bottom and save it before exporting")
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                raise ExportError(f"{path}: code cell {index} has an error output ({output.get('ename', 'Error')}: "
                                  f"{output.get('evalue', '')}); fix it and re-run the notebook before exporting")
    return nb


def question_number(cell) -> int | None:
    """N if `cell` is a markdown cell whose source starts with ``# Question N``."""
    if cell.get("cell_type") != "markdown":
        return None
    match = HEADING_RE.match(cell.source.lstrip())
    return int(match.group(1)) if match else None


def question_slices(nb, path: Path) -> tuple[range, dict[int, range]]:
    """The shared cells (before the first question, title excluded) and each question's cells, as index ranges."""
    starts: dict[int, int] = {}
    for index, cell in enumerate(nb.cells):
        q = question_number(cell)
        if q in starts:
            raise ExportError(f"{path}: '# Question {q}' heading appears twice (cells {starts[q]} and {index})")
        if q is not None:
            starts[q] = index
    bounds = sorted(starts.values()) + [len(nb.cells)]
    slices = {q: range(start, bounds[bounds.index(start) + 1]) for q, start in starts.items()}
    for q in QUESTIONS:
        if q not in slices:
            raise ExportError(f"{path}: slice for Question {q} is missing (no markdown cell starting with "
                              f"'# Question {q}')")
        if not any(nb.cells[i].source.strip() for i in slices[q][1:]):
            raise ExportError(f"{path}: slice for Question {q} is empty (nothing after its heading, cell {starts[q]})")
    return range(1, bounds[0]), slices


def appendix_heading_cell(has_helpers: bool):
    """The markdown cell that separates the answer from the cells printed after it, saying what follows: the
    question's helpers only where it has some."""
    text = f"{HELPERS_TEXT} {SHARED_TEXT}" if has_helpers else SHARED_TEXT[0].upper() + SHARED_TEXT[1:]
    return nbformat.v4.new_markdown_cell(f"# {APPENDIX_HEADING}\n\n{text}", metadata={"tags": [APPENDIX_TAG]})


def question_notebook(nb, shared: range, answer: range):
    """A copy of `nb` to print for one question: its answer, the appendix heading, then the question's own cells
    tagged `print-appendix` (helpers its answer uses: metrics, figure code), then the shared cells.

    The saved widget state is left out: without it nbconvert prints each widget's text fallback (a progress bar's
    last line), where with it the widget would render as a script, blank on paper."""
    printed = nbformat.from_dict(nb)
    printed.metadata.pop("widgets", None)
    helpers = [i for i in answer if MOVE_TAG in nb.cells[i].metadata.get("tags", [])]
    printed.cells = ([nb.cells[i] for i in answer if i not in helpers] + [appendix_heading_cell(bool(helpers))]
                     + [nb.cells[i] for i in helpers] + [nb.cells[i] for i in shared])
    return printed


def html_exporter(mathjax: str) -> HTMLExporter:
    """nbconvert's HTML exporter with the print template, offline MathJax, no prompts and the print tags applied."""
    return HTMLExporter(config=Config({
        "TagRemovePreprocessor": {"enabled": True, "remove_cell_tags": {SKIP_TAG},
                                  "remove_input_tags": {OUTPUT_ONLY_TAG}},
        "RegexRemovePreprocessor": {"enabled": True, "patterns": [r"\s*\Z"]},  # blank cells print nothing
        "CoalesceStreamsPreprocessor": {"enabled": True},  # one block per cell for consecutive prints
        "HTMLExporter": {"template_name": "print", "extra_template_basedirs": [str(TEMPLATE_DIR)],
                         "mathjax_url": mathjax, "exclude_input_prompt": True, "exclude_output_prompt": True},
    }))


def render_html(exporter: HTMLExporter, nb, html: Path, title: str) -> Path:
    """Write `nb` as the print HTML file `html`, titled `title`."""
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    html.write_text(body, encoding="utf-8")
    return html


def find_tool(explicit: str | None, names: tuple[str, ...], what: str) -> str:
    """The path of the executable `explicit`, else of the first of `names` on PATH."""
    for name in [explicit] if explicit else names:
        if name and shutil.which(name):
            return shutil.which(name)
    raise ExportError(f"{what} not found: {explicit or ' / '.join(names)}; {APT_HINT}")


def mathjax_url(explicit: str | None) -> str:
    if explicit:
        return explicit
    if not MATHJAX_JS.is_file():
        raise ExportError(f"MathJax not found at {MATHJAX_JS} (needed to render math offline); {APT_HINT}")
    return f"{MATHJAX_JS.as_uri()}?config={MATHJAX_CONFIG}"


def print_pdf(chromium: str, html: Path, pdf: Path, workdir: Path) -> str:
    """Print `html` to the A4 PDF `pdf` with headless Chromium (flags: /work/shared/TOOLCHAIN.md), offline, and
    return the page's DOM as it was before printing (--dump-dom), which holds the width check's report."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir))
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
               "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}", "--no-pdf-header-footer",
               f"--virtual-time-budget={CHROMIUM_VIRTUAL_TIME_MS}", "--dump-dom", f"--print-to-pdf={pdf}",
               html.as_uri()]
    try:  # HOME in the profile keeps Chromium's crash and cache folders out of the user's home
        proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=CHROMIUM_TIMEOUT_S,
                              env=dict(os.environ, HOME=str(profile)), check=False)
    except subprocess.TimeoutExpired as exc:
        raise ExportError(f"chromium did not finish printing {html.name} within {CHROMIUM_TIMEOUT_S} s") from exc
    except OSError as exc:
        raise ExportError(f"cannot run chromium ({chromium}): {exc}; {APT_HINT}") from exc
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if proc.returncode != 0 or not pdf.is_file() or pdf.read_bytes()[:5] != b"%PDF-":
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-15:]
        raise ExportError(f"chromium failed to print {html.name} (exit {proc.returncode}):\n  " + "\n  ".join(tail))
    return proc.stdout.decode("utf-8", "replace")


def width_report(dom: str, name: str) -> dict:
    """What width_check.js recorded in `dom`: ``page`` (its width in CSS px), ``checked`` (how many elements of
    each kind it measured) and ``wide`` (those wider than their room, each ``{"kind", "cell" (a cell id or None),
    "width", "room"}``)."""
    match = WIDTH_MARK_RE.search(dom)
    if match is None:
        raise ExportError(f"{name}: the width check did not report: MathJax did not finish typesetting within "
                          f"Chromium's {CHROMIUM_VIRTUAL_TIME_MS // 1000} s of virtual time, or the print template "
                          f"in {TEMPLATE_DIR} lacks width_check.js")
    return json.loads(match.group(1))


def cell_label(nb, index_by_id: dict[str, int], cell_id: str | None) -> tuple[int, str]:
    """A sort key and the words that name the notebook cell with id `cell_id`: its index and first line."""
    if cell_id not in index_by_id:  # the appendix heading question_notebook adds is in no notebook
        return len(nb.cells), "the generated appendix heading" if cell_id else "an element outside the cells"
    index = index_by_id[cell_id]
    first = next((line.strip() for line in nb.cells[index].source.splitlines() if line.strip()), "")
    first = first if len(first) <= 70 else first[:67] + "..."
    return index, f"cell {index} ({nb.cells[index].cell_type}, first line: {first!r})"


def what_is_wide(item: dict, cell, page: float) -> str:
    """'display equation 812 px wide, ...' for one element of a width report; a code line says which it is."""
    what = WIDTH_KINDS.get(item["kind"], (item["kind"], item["kind"]))[0]
    if item["kind"] == "code" and cell is not None:
        lines = cell.source.splitlines() or [""]
        longest = max(range(len(lines)), key=lambda i: len(lines[i]))
        what += f" {longest + 1} ({len(lines[longest])} characters)"
    return f"{what} {item['width']} px wide, {item['room']} px of room on the {page:.0f} px page"


def width_problems(nb, reports: dict[str, dict]) -> str:
    """One line per cell that has something wider than the printed page, from each PDF's width report (a shared
    cell printed in both PDFs is named once)."""
    index_by_id = {cell.get("id"): i for i, cell in enumerate(nb.cells) if cell.get("id")}
    cells: dict[str | None, dict] = {}
    for name, report in reports.items():
        for item in report["wide"]:
            entry = cells.setdefault(item["cell"], {"what": [], "pdfs": []})
            index = index_by_id.get(item["cell"])
            what = what_is_wide(item, None if index is None else nb.cells[index], report["page"])
            for key, value in (("what", what), ("pdfs", name)):
                if value not in entry[key]:
                    entry[key].append(value)
    labelled = sorted(((*cell_label(nb, index_by_id, cell_id), entry) for cell_id, entry in cells.items()),
                      key=lambda row: row[0])
    return "\n".join(f"  {label}: {'; '.join(entry['what'])} [in {', '.join(entry['pdfs'])}]"
                     for _, label, entry in labelled)


def width_summary(report: dict) -> str:
    """'2 display equations, 1 table, 31 code cells measured, all within the 710 px page'."""
    order = list(WIDTH_KINDS)
    counts = [f"{count} {WIDTH_KINDS.get(kind, (kind, kind + 's'))[count != 1]}" for kind, count in
              sorted(report["checked"].items(), key=lambda item: order.index(item[0]) if item[0] in order else 9)]
    return f"{', '.join(counts) or 'nothing'} measured, all within the {report['page']:.0f} px page"


def with_cell_ids(nb):
    """`nb`, or a copy whose cells all have distinct ids (an nbformat < 4.5 notebook has none): the width check
    names a cell by the id the HTML carries."""
    ids = [cell.get("id") for cell in nb.cells]
    if all(ids) and len(set(ids)) == len(ids):
        return nb
    copy = nbformat.from_dict(json.loads(json.dumps(nb)))
    copy.nbformat_minor = max(copy.nbformat_minor, 5)
    for index, cell in enumerate(copy.cells):
        cell.id = f"cell-{index}"
    return copy


def page_texts(pdftotext: str, pdf: Path) -> list[str]:
    """The text of each page of `pdf`, whitespace collapsed (pdftotext ends every page with a form feed)."""
    text = subprocess.run([pdftotext, str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return [re.sub(r"\s+", " ", page) for page in text.split("\f")[:-1]]


def page_split(pages: list[str], name: str) -> dict[str, int]:
    """Answer and appendix pages: the appendix starts on the first page that shows its heading."""
    start = next((i for i, text in enumerate(pages) if APPENDIX_HEADING in text), None)
    if start is None:
        raise ExportError(f"{name}: the heading '{APPENDIX_HEADING}' is not on any printed page; check the print "
                          f"template in {TEMPLATE_DIR}")
    return {"answer_pages": start, "appendix_pages": len(pages) - start}


def written_answers(folder: Path) -> dict[int, Path]:
    """``folder/q1.pdf`` ... ``q4.pdf``, each checked to be a PDF."""
    found = {}
    for q in WRITTEN:
        path = folder / f"q{q}.pdf"
        if not path.is_file() or path.read_bytes()[:5] != b"%PDF-":
            raise ExportError(f"written answer {path} is missing or not a PDF; run `make written` to build it")
        found[q] = path
    return found


def publish(stage: Path, out: Path, names: list[str], notebook_name: str) -> list[Path]:
    """Move the finished files from `stage` into `out` (same file system: atomic renames); drop older notebooks."""
    for name in names:
        os.replace(stage / name, out / name)
    for stale in out.glob("*_Assgn3.ipynb"):  # a notebook from an earlier export under other names
        if stale.name != notebook_name and stale.is_file():
            stale.unlink()
            print(f"export_submission: removed stale {stale.name} from {out}")
    return [out / name for name in names]


def export(notebook: Path, written: Path, out: Path, last: str, first: str, chromium: str | None = None,
           mathjax: str | None = None, keep_html: bool = False) -> list[Path]:
    """Check every input, render the package in a temporary folder inside `out`, then move it into `out`."""
    nb = with_cell_ids(load_executed_notebook(notebook))
    shared, answers = question_slices(nb, notebook)
    written_pdfs = written_answers(written)
    chromium_bin = find_tool(chromium or os.environ.get("CHROMIUM"), CHROMIUM_NAMES, "chromium")
    pdftotext = find_tool(None, ("pdftotext",), "pdftotext (poppler-utils)")
    exporter = html_exporter(mathjax_url(mathjax))

    out = out.resolve()
    created_out = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        names, pages, widths = [], {}, {}
        for q in QUESTIONS:
            pdf = stage / f"programming_q{q}.pdf"
            html = render_html(exporter, question_notebook(nb, shared, answers[q]), pdf.with_suffix(".html"),
                               f"{last} {first} - Assignment 3 - Question {q}")
            widths[pdf.name] = width_report(print_pdf(chromium_bin, html, pdf, stage), pdf.name)
            pages[pdf.name] = page_split(page_texts(pdftotext, pdf), pdf.name)
            names += [pdf.name, html.name] if keep_html else [pdf.name]
        problems = width_problems(nb, widths)
        if problems:
            raise ExportError("wider than the printed page, so clipped or wrapped in the PDF (shorten the code "
                              "line, break the equation with \\\\ in an aligned block, or narrow the table; then "
                              "export again):\n" + problems)
        (stage / "pages.json").write_text(json.dumps(pages, indent=2) + "\n")
        names.append("pages.json")
        for q, source in written_pdfs.items():
            shutil.copyfile(source, stage / f"written_q{q}.pdf")
            names.append(f"written_q{q}.pdf")
        notebook_name = f"{last}_{first}_Assgn3.ipynb"
        shutil.copyfile(notebook, stage / notebook_name)
        names.append(notebook_name)
        files = publish(stage, out, names, notebook_name)
    except BaseException:
        if created_out:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for name, split in pages.items():
        print(f"export_submission: {name}: {split['answer_pages']} answer pages, "
              f"{split['appendix_pages']} appendix pages; width check: {width_summary(widths[name])}")
    return files


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = " (default: %(default)s)"
    parser.add_argument("--notebook", type=Path, default=Path("Lastname_Firstname_Asgn3.ipynb"), help="the executed "
                        "notebook" + default)
    parser.add_argument("--written", type=Path, default=Path("written"), help="folder of `make written`" + default)
    parser.add_argument("--out", type=Path, default=Path("submission"), help="output folder" + default)
    parser.add_argument("--last", help="last name as shown on Quercus (default: env LAST)")
    parser.add_argument("--first", help="first name as shown on Quercus (default: env FIRST)")
    parser.add_argument("--chromium", help="Chromium executable (default: env CHROMIUM, else chromium on PATH)")
    parser.add_argument("--mathjax-url", help=f"MathJax 2 URL (default: {MATHJAX_JS.as_uri()}?config={MATHJAX_CONFIG})")
    parser.add_argument("--keep-html", action="store_true", help="also keep the HTML files Chromium printed")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        last = validate_name(args.last if args.last is not None else os.environ.get("LAST"), "Last", "LAST")
        first = validate_name(args.first if args.first is not None else os.environ.get("FIRST"), "First", "FIRST")
        files = export(args.notebook, args.written, args.out, last, first, chromium=args.chromium,
                       mathjax=args.mathjax_url, keep_html=args.keep_html)
    except ExportError as exc:
        print(f"export_submission: error: {exc}", file=sys.stderr)
        return exc.code
    print(f"export_submission: wrote {len(files)} files to {args.out}/: " + ", ".join(f.name for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
