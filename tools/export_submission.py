#!/usr/bin/env python3
"""Build the Crowdmark submission package in one command.

Writes into ``--out`` (``submission/``):

* ``programming_q1.pdf``, ``programming_q2.pdf`` -- the executed notebook sliced
  per question: every cell before the first ``# Question`` heading (title,
  setup, configuration, shared helpers) followed by the cells of that question
  (from its ``# Question N`` heading up to the next one or the end).
* ``written_q1.pdf`` ... ``written_q4.pdf`` -- copies of ``written/q1.pdf`` ...
* ``<Last>_<First>_Assgn3.ipynb`` -- the executed notebook, byte-identical,
  under the file name the assignment asks for.

The PDFs are made with real tools: nbconvert renders HTML (template in
``tools/export_template/print``, MathJax served from Debian's libjs-mathjax,
fully offline) and headless Chromium prints it to A4.

Nothing half-written is left in ``--out``: everything is produced in a
temporary folder next to it and only moved into place once all files exist.

Usage::

    python tools/export_submission.py --notebook Lastname_Firstname_Asgn3.ipynb \
        --written written --out submission --last Doe --first Jane

``--last``/``--first`` default to the ``LAST``/``FIRST`` environment variables.
Exit status: 0 success, 2 missing/invalid names or bad usage, 1 any other error.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE_DIR = HERE / "export_template"
TEMPLATE_NAME = "print"

QUESTIONS = (1, 2)
WRITTEN = (1, 2, 3, 4)

MATHJAX_JS = Path("/usr/share/javascript/mathjax/MathJax.js")
MATHJAX_CONFIG = "TeX-AMS_CHTML-full,Safe"
CHROMIUM_NAMES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
)
CHROMIUM_TIMEOUT_S = 180

APT_HINT = "install it with: apt-get install chromium libjs-mathjax  (or: make sysdeps)"
NAME_HINT = "pass them as: make pdfs LAST=Doe FIRST=Jane  (or --last Doe --first Jane, or env LAST/FIRST)"

# A level-1 markdown heading "# Question N" (not "## ...", not the title cell).
HEADING_RE = re.compile(r"#[ \t]+Question[ \t]+(\d+)\b")
NAME_RE = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")


class ExportError(Exception):
    """A problem the user must fix; the message says how."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- names
def validate_name(value: str | None, what: str, env: str) -> str:
    value = (value or "").strip()
    if not value:
        raise ExportError(
            f"{what} name is missing (--{what.lower()} or env {env} is empty); {NAME_HINT}",
            code=2,
        )
    if not NAME_RE.fullmatch(value):
        raise ExportError(
            f"invalid {what.lower()} name {value!r}: use letters, hyphens and apostrophes only "
            f"(no spaces, digits or slashes), exactly as displayed on Quercus; {NAME_HINT}",
            code=2,
        )
    return value


def submission_notebook_name(last: str, first: str) -> str:
    return f"{last}_{first}_Assgn3.ipynb"


# ------------------------------------------------------------------------ notebook
def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def question_number(cell) -> int | None:
    """N if ``cell`` is a markdown cell whose source starts with ``# Question N``."""
    if cell.get("cell_type") != "markdown":
        return None
    m = HEADING_RE.match(_source(cell).lstrip())
    return int(m.group(1)) if m else None


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExportError(
            f"Python package {module.split('.')[0]} is missing in {sys.executable}; "
            "install it with: pip install nbformat nbconvert  (or re-create the venv)"
        ) from exc


def load_notebook(path: Path):
    nbformat = _require("nbformat")

    if not path.is_file():
        raise ExportError(
            f"notebook not found: {path} (run the notebook first, e.g. `make run`)"
        )
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises several kinds
        raise ExportError(f"cannot read notebook {path}: {exc}") from exc
    return nb


def check_executed(nb, path: Path) -> None:
    """Every non-empty code cell ran, and no cell holds an error output."""
    for idx, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        if _source(cell).strip() and cell.get("execution_count") is None:
            raise ExportError(
                f"{path}: code cell {idx} was not executed (execution_count is None); "
                "run the whole notebook top to bottom and save it before exporting"
            )
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                ename = out.get("ename", "Error")
                evalue = out.get("evalue", "")
                raise ExportError(
                    f"{path}: code cell {idx} has an error output ({ename}: {evalue}); "
                    "fix it and re-run the notebook before exporting"
                )


def slice_notebook(nb, path: Path) -> dict[int, list[int]]:
    """Map question number -> indices of the cells of its PDF (preamble + question)."""
    headings = [(i, question_number(c)) for i, c in enumerate(nb.cells)]
    headings = [(i, q) for i, q in headings if q is not None]
    seen: dict[int, int] = {}
    for i, q in headings:
        if q in seen:
            raise ExportError(
                f"{path}: '# Question {q}' heading appears twice (cells {seen[q]} and {i})"
            )
        seen[q] = i
    if not headings:
        raise ExportError(
            f"{path}: no markdown cell starting with '# Question N'; cannot slice the notebook"
        )

    preamble = list(range(headings[0][0]))
    bounds = [i for i, _ in headings] + [len(nb.cells)]
    slices: dict[int, list[int]] = {}
    for k, (start, q) in enumerate(headings):
        body = list(range(start, bounds[k + 1]))
        slices[q] = preamble + body

    for q in QUESTIONS:
        if q not in slices:
            raise ExportError(
                f"{path}: slice for Question {q} is missing (no markdown cell starting with '# Question {q}')"
            )
        start = seen[q]
        body = [i for i in slices[q] if i > start]
        if not any(_source(nb.cells[i]).strip() for i in body):
            raise ExportError(
                f"{path}: slice for Question {q} is empty (nothing after its heading, cell {start})"
            )
    return slices


# Rough print geometry (A4, 12 mm margins, 9 pt code): used only to decide which
# cells are too tall to be kept on one page.
PAGE_HEIGHT_PX = 1030
CONTENT_WIDTH_PX = 640
CODE_LINE_PX, CODE_CHARS_PER_LINE = 16, 95
TEXT_LINE_PX, TEXT_CHARS_PER_LINE = 20, 100
OUTPUT_ONLY_TAG = "print-output-only"  # the notebook's rendered discussions
SKIP_TAG = "print-skip"  # plumbing the notebook explains in prose (checkpoints, training loop, ...)
BREAKABLE_TAG = "print-breakable"  # -> class celltag_print-breakable (see print.css)
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _wrapped_lines(text: str, width: int) -> int:
    return (
        sum(max(1, -(-len(line) // width)) for line in text.splitlines()) if text else 0
    )


def _png_height_px(b64: str) -> int:
    import base64
    import struct

    try:
        head = base64.b64decode(b64.replace("\n", "")[:44])
        w, h = struct.unpack(">II", head[16:24])
        return int(h * min(1.0, CONTENT_WIDTH_PX / w)) if w else 400
    except (ValueError, struct.error):  # not a PNG header: assume a typical figure
        return 400


def estimated_height_px(cell) -> int:
    """Approximate printed height of a cell (input + outputs)."""
    if cell.get("cell_type") == "markdown":
        return _wrapped_lines(_source(cell), TEXT_CHARS_PER_LINE) * TEXT_LINE_PX
    height = _wrapped_lines(_source(cell), CODE_CHARS_PER_LINE) * CODE_LINE_PX + 20
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            text = out.get("text", "")
            height += (
                _wrapped_lines(
                    "".join(text) if isinstance(text, list) else text,
                    CODE_CHARS_PER_LINE,
                )
                * CODE_LINE_PX
            )
            continue
        data = out.get("data", {})
        if "image/png" in data:
            png = data["image/png"]
            height += _png_height_px("".join(png) if isinstance(png, list) else png)
        elif any(k.startswith("image/") for k in data):
            height += 400
        elif "text/markdown" in data:
            text = data["text/markdown"]
            text = "".join(text) if isinstance(text, list) else text
            height += _wrapped_lines(text, TEXT_CHARS_PER_LINE) * TEXT_LINE_PX
        elif "text/html" in data or "text/plain" in data:
            text = (
                data.get("text/plain", "")
                if "text/html" not in data
                else data["text/html"]
            )
            text = "".join(text) if isinstance(text, list) else text
            height += min(_wrapped_lines(text, CODE_CHARS_PER_LINE), 200) * CODE_LINE_PX
    return height


def sub_notebook(nb, indices: list[int]):
    """The cells to print, as a new notebook (the source notebook is not modified).

    Blank code cells without output, and cells tagged ``print-skip``, are left
    out of the print. Cells taller than ~25% of a page are tagged so that the
    print CSS lets them break across pages
    (short cells are kept whole; a tall one pushed to the next page would leave a
    large blank gap).
    """
    import copy

    sub = copy.deepcopy(nb)
    cells = []
    for i in indices:
        cell = copy.deepcopy(nb.cells[i])
        if (
            cell.get("cell_type") == "code"
            and not _source(cell).strip()
            and not cell.get("outputs")
        ) or SKIP_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            # Widgets cannot run on paper: print their text fallback (e.g. a tqdm bar).
            if WIDGET_MIME in data and len(data) > 1:
                del data[WIDGET_MIME]
        if estimated_height_px(cell) > 0.25 * PAGE_HEIGHT_PX:
            tags = list(cell.setdefault("metadata", {}).get("tags", []))
            cell["metadata"]["tags"] = tags + [BREAKABLE_TAG]
        cells.append(cell)
    sub.cells = cells
    sub.metadata.pop("widgets", None)
    return sub


# -------------------------------------------------------------------------- tools
def find_chromium(explicit: str | None) -> str:
    candidates = (
        [explicit]
        if explicit
        else [os.environ.get("CHROMIUM") or None, *CHROMIUM_NAMES]
    )
    for name in candidates:
        if not name:
            continue
        found = shutil.which(name)
        if found:
            return found
    if explicit:
        raise ExportError(f"chromium executable not found: {explicit}; {APT_HINT}")
    raise ExportError(
        f"chromium not found on PATH (needed to print the PDFs); {APT_HINT}"
    )


def mathjax_url(explicit: str | None) -> str:
    if explicit:
        return explicit
    if not MATHJAX_JS.is_file():
        raise ExportError(
            f"MathJax not found at {MATHJAX_JS} (needed to render math offline); {APT_HINT}"
        )
    return f"{MATHJAX_JS.as_uri()}?config={MATHJAX_CONFIG}"


def render_html(nb, title: str, mathjax: str) -> str:
    HTMLExporter = _require("nbconvert").HTMLExporter
    TagRemovePreprocessor = _require("nbconvert.preprocessors").TagRemovePreprocessor
    exporter = HTMLExporter(
        template_name=TEMPLATE_NAME,
        extra_template_basedirs=[str(TEMPLATE_DIR)],
        mathjax_url=mathjax,
    )
    # cells that only build rendered text from the run's numbers print their output, not their code
    exporter.register_preprocessor(
        TagRemovePreprocessor(remove_input_tags={OUTPUT_ONLY_TAG}), enabled=True
    )
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body


def print_pdf(chromium: str, html: Path, pdf: Path, workdir: Path) -> None:
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir))
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--no-pdf-header-footer",
        "--virtual-time-budget=20000",
        f"--print-to-pdf={pdf}",
        html.as_uri(),
    ]
    env = dict(
        os.environ, HOME=str(profile)
    )  # keep chromium's crash/cache dirs out of $HOME
    try:
        proc = subprocess.run(
            cmd,
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=CHROMIUM_TIMEOUT_S,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        raise ExportError(
            f"chromium did not finish printing {html.name} within {CHROMIUM_TIMEOUT_S}s"
        ) from exc
    except OSError as exc:
        raise ExportError(
            f"cannot run chromium ({chromium}): {exc}; {APT_HINT}"
        ) from exc
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    ok = pdf.is_file() and pdf.stat().st_size > 0 and pdf.read_bytes()[:5] == b"%PDF-"
    if proc.returncode != 0 or not ok:
        tail = proc.stdout.decode("utf-8", "replace").strip().splitlines()[-15:]
        raise ExportError(
            f"chromium failed to print {html.name} (exit {proc.returncode}):\n  "
            + "\n  ".join(tail)
        )


# --------------------------------------------------------------------------- main
def export(
    notebook: Path,
    written: Path,
    out: Path,
    last: str,
    first: str,
    chromium: str | None = None,
    mathjax: str | None = None,
    keep_html: bool = False,
) -> list[Path]:
    """Validate everything, render into a temp dir, then move files into ``out``."""
    nb = load_notebook(notebook)
    check_executed(nb, notebook)
    slices = slice_notebook(nb, notebook)

    written_src = {}
    for q in WRITTEN:
        src = written / f"q{q}.pdf"
        if not src.is_file() or src.stat().st_size == 0:
            raise ExportError(
                f"written answer {src} is missing; run `make written` first"
            )
        with open(src, "rb") as fh:
            if fh.read(5) != b"%PDF-":
                raise ExportError(
                    f"written answer {src} is not a PDF; run `make written` to rebuild it"
                )
        written_src[q] = src

    chromium_bin = find_chromium(chromium)
    mj = mathjax_url(mathjax)

    out = out.resolve()
    created_out = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    ok = False
    try:
        produced: list[str] = []
        for q in QUESTIONS:
            sub = sub_notebook(nb, slices[q])
            html = stage / f"programming_q{q}.html"
            html.write_text(
                render_html(sub, f"{last} {first} - Assignment 3 - Question {q}", mj),
                encoding="utf-8",
            )
            print_pdf(chromium_bin, html, stage / f"programming_q{q}.pdf", stage)
            produced.append(f"programming_q{q}.pdf")
            if keep_html:
                produced.append(html.name)
        for q, src in written_src.items():
            shutil.copyfile(src, stage / f"written_q{q}.pdf")
            produced.append(f"written_q{q}.pdf")
        nb_name = submission_notebook_name(last, first)
        shutil.copyfile(notebook, stage / nb_name)
        produced.append(nb_name)

        final = []
        for name in (
            produced
        ):  # all files exist: now publish them (same filesystem -> atomic renames)
            os.replace(stage / name, out / name)
            final.append(out / name)
        ok = True
        for stale in out.glob(
            "*_Assgn3.ipynb"
        ):  # a notebook from an earlier run under other names
            if stale.name != nb_name and stale.is_file():
                stale.unlink()
                print(f"export_submission: removed stale {stale.name} from {out}")
        return final
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not ok and created_out:
            try:
                out.rmdir()  # only if still empty
            except OSError:
                pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Export the per-question PDFs, written PDFs and renamed notebook for Crowdmark.",
    )
    p.add_argument(
        "--notebook",
        type=Path,
        default=Path("Lastname_Firstname_Asgn3.ipynb"),
        help="executed notebook (default: %(default)s)",
    )
    p.add_argument(
        "--written",
        type=Path,
        default=Path("written"),
        help="folder with q1.pdf..q4.pdf from `make written` (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("submission"),
        help="output folder (default: %(default)s)",
    )
    p.add_argument(
        "--last", default=None, help="last name as shown on Quercus (default: env LAST)"
    )
    p.add_argument(
        "--first",
        default=None,
        help="first name as shown on Quercus (default: env FIRST)",
    )
    p.add_argument(
        "--chromium",
        default=None,
        help="chromium executable (default: env CHROMIUM, else chromium on PATH)",
    )
    p.add_argument(
        "--mathjax-url",
        default=None,
        help=f"MathJax 2 URL (default: {MATHJAX_JS.as_uri()}?config={MATHJAX_CONFIG})",
    )
    p.add_argument(
        "--keep-html", action="store_true", help="also keep the intermediate HTML files"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        last = validate_name(
            args.last if args.last is not None else os.environ.get("LAST"),
            "Last",
            "LAST",
        )
        first = validate_name(
            args.first if args.first is not None else os.environ.get("FIRST"),
            "First",
            "FIRST",
        )
        files = export(
            args.notebook,
            args.written,
            args.out,
            last,
            first,
            chromium=args.chromium,
            mathjax=args.mathjax_url,
            keep_html=args.keep_html,
        )
    except ExportError as exc:
        print(f"export_submission: error: {exc}", file=sys.stderr)
        return exc.code
    print(f"export_submission: wrote {len(files)} files to {args.out}/:")
    for f in files:
        print(f"  {f.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
