#!/usr/bin/env python3
"""Open the notebook in JupyterLab, in headless Chromium, as a user would; screenshot its first screens and check
that every cell the notebook folds is shown folded.

The notebook folds its set-up and text-rendering cells (issue 34): a cell whose source starts with ``#@title``
carries ``"cellView": "form"`` (Colab) and ``"jupyter": {"source_hidden": true}`` (JupyterLab). This tool

1. copies the notebook into a temporary folder (the original is never opened, so never saved or checkpointed),
2. starts JupyterLab on a free localhost port, without a token or a browser, with fresh settings (default theme
   and layout, no news or update notices) and a fresh workspace,
3. opens the copy in headless Chromium at ``--width`` x ``--height`` CSS px (default 1280 x 1600), driven over the
   DevTools protocol on a pipe (``--remote-debugging-pipe``: no port, no driver, standard library only),
4. waits until every cell is on the page and the page has stopped changing (markdown, math, figures),
5. saves ``screen-1.png`` ... ``screen-N.png`` (``--screens``, default 3), the notebook scrolled down one screen
   at a time, into ``--out``, and
6. checks, in the page's DOM, that each cell marked folded (``source_hidden``, or a Colab form: ``"cellView":
   "form"`` or a ``#@title`` first line) shows JupyterLab's collapsed-input placeholder (``.jp-InputPlaceholder``,
   whose text is the source's first line) instead of its editor (``.jp-InputArea``), and that no other cell does.

Usage: ``python tools/screenshot_notebook.py [--notebook Lastname_Firstname_Asgn3.ipynb] [--out docs/screenshots]``
(``make screenshot``); ``--help`` lists the other options. Needs pip ``jupyterlab`` (in the environment that runs
this script; written for 4.6) and Debian's ``chromium``. One run takes about 25 s. Exit status: 0 the check
passed, 1 cells are not shown as the notebook marks them (named on stderr; the screenshots are written all the
same), 2 the tools are missing or JupyterLab or Chromium failed.
"""
from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "Lastname_Firstname_Asgn3.ipynb"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
APT_HINT = "apt-get install chromium (or: make sysdeps, as root)"
PIP_HINT = "pip install jupyterlab (in the environment that runs this script)"
SERVER_START_S = 90  # JupyterLab's first start builds nothing, but a busy machine is slow
SETTLE_S = 1.5       # the page counts as rendered once its layout has not changed for this long

# JupyterLab settings for a reproducible screenshot: no news or update toasts, and every cell in the DOM (the
# default windowing draws off-screen cells lazily, and the check reads all of them). Nothing else differs from
# what a user sees on a fresh installation.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}

# In the page: the notebook's cells in order, each with whether it shows the collapsed-input placeholder and
# whether its editor is visible.
CELLS_JS = """(() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  if (!panel) return JSON.stringify(null);
  const cells = [...panel.querySelectorAll('.jp-Cell')].filter(cell => cell.parentElement.closest('.jp-Cell') === null);
  return JSON.stringify(cells.map(cell => ({
    placeholder: cell.querySelector('.jp-InputPlaceholder') !== null,
    editor: cell.querySelector('.jp-InputArea') !== null && cell.querySelector('.jp-InputArea').offsetParent !== null,
  })));
})()"""

# In the page: a fingerprint of the layout, which stops changing once markdown, math and figures are drawn.
LAYOUT_JS = """(() => {
  const scroller = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');
  const images = [...document.images];
  return JSON.stringify([scroller ? scroller.scrollHeight : -1, document.querySelectorAll('.jp-Cell').length,
                         images.length, images.every(image => image.complete),
                         document.querySelectorAll('mjx-container, .MathJax').length]);
})()"""

SCROLL_JS = """((screen) => {
  const scroller = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');
  scroller.scrollTop = screen * scroller.clientHeight;
  return JSON.stringify([scroller.scrollTop, scroller.scrollHeight, scroller.clientHeight]);
})(%d)"""


class ToolError(Exception):
    """The tools are missing, or JupyterLab or Chromium failed: exit status 2."""


class DevTools:
    """A minimal Chrome DevTools Protocol client over Chromium's --remote-debugging-pipe (fd 3 in, fd 4 out;
    each message JSON ending with a NUL byte)."""

    def __init__(self, chromium: str, args: list[str], profile: Path, log):
        to_browser = os.pipe()    # we write [1], Chromium reads [0] as fd 3
        from_browser = os.pipe()  # Chromium writes [1] as fd 4, we read [0]
        command = ["sh", "-c", f'exec "$0" "$@" 3<&{to_browser[0]} 4>&{from_browser[1]}', chromium,
                   "--remote-debugging-pipe", *args]
        self.process = subprocess.Popen(command, pass_fds=(to_browser[0], from_browser[1]), stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=log, env=dict(os.environ, HOME=str(profile)),
                                        start_new_session=True)
        os.close(to_browser[0])
        os.close(from_browser[1])
        self.write_fd, self.read_fd = to_browser[1], from_browser[0]
        self.buffer = b""
        self.next_id = 0

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60):
        """Send one command and wait for its answer (events that arrive meanwhile are dropped)."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._receive(deadline, method)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise ToolError(f"chromium: {method} failed: {answer['error'].get('message')}")
                return answer.get("result", {})

    def _receive(self, deadline: float, method: str) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise ToolError(f"chromium did not answer {method} in time")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise ToolError(f"chromium exited while answering {method} (exit {self.process.poll()})")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, expression: str, session: str):
        """The JSON value the page's `expression` returns as a string."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        if "exceptionDetails" in result:
            raise ToolError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return json.loads(result["result"]["value"])

    def close(self):
        for fd in (self.write_fd, self.read_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        stop(self.process)


def stop(process: subprocess.Popen) -> None:
    """End `process` and the processes it started (its own session: JupyterLab's kernels, Chromium's helpers)."""
    if process.poll() is None:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    try:  # helpers left in its process group once it has exited
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def find_chromium(explicit: str | None) -> str:
    for name in [explicit] if explicit else CHROMIUM_NAMES:
        if name and shutil.which(name):
            return shutil.which(name)
    raise ToolError(f"chromium not found ({explicit or ' / '.join(CHROMIUM_NAMES)}): {APT_HINT}")


def start_lab(root: Path, settings: Path, log) -> tuple[subprocess.Popen, str]:
    """JupyterLab serving `root` on a free localhost port, without a token; returns it and its base URL."""
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    port = free_port()
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--IdentityProvider.token=",
               "--ServerApp.password=", f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={settings}",
               f"--LabApp.workspaces_dir={settings / 'workspaces'}", "--LabApp.news_url=",
               "--ServerApp.open_browser=False", "--ServerApp.allow_root=True"]
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(settings / "config"), JUPYTER_DATA_DIR=str(settings / "data"),
               JUPYTER_RUNTIME_DIR=str(settings / "runtime"), IPYTHONDIR=str(settings / "ipython"))  # the user's none
    lab = subprocess.Popen(command, cwd=root, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                           start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if lab.poll() is not None:
            raise ToolError(f"jupyterlab exited at start (exit {lab.returncode})")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as response:
                if response.status == 200:
                    return lab, url
        except OSError:
            time.sleep(0.3)
    stop(lab)
    raise ToolError(f"jupyterlab did not answer on {url} within {SERVER_START_S} s")


def wait_rendered(browser: DevTools, session: str, cells: int, timeout: float) -> None:
    """Until the notebook shows all its `cells` and its layout has not changed for SETTLE_S seconds."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        shown = browser.evaluate(CELLS_JS, session)
        layout = browser.evaluate(LAYOUT_JS, session) if shown and len(shown) == cells else None
        if layout != last:
            last, since = layout, time.monotonic()
        elif layout is not None and time.monotonic() - since >= SETTLE_S:
            return
        time.sleep(0.25)
    shown = browser.evaluate(CELLS_JS, session)
    raise ToolError(f"the notebook did not finish rendering within {timeout:.0f} s "
                    f"({'no notebook on the page' if shown is None else f'{len(shown)} of {cells} cells shown'})")


def folding_marks(cell: dict) -> list[str]:
    """What in `cell` asks JupyterLab to show it folded: its source_hidden flag, and Colab's form marks (a form cell
    must carry source_hidden too, issue 34)."""
    source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    metadata = cell.get("metadata", {})
    marks = ["source_hidden"] if metadata.get("jupyter", {}).get("source_hidden") is True else []
    if metadata.get("cellView") == "form":
        marks.append('"cellView": "form"')
    if source.lstrip().startswith("#@title"):
        marks.append("#@title")
    return marks


def folding_problems(notebook: dict, shown: list[dict]) -> tuple[int, list[str]]:
    """How many cells the notebook folds, and one line per cell JupyterLab shows otherwise: a cell marked folded
    (source_hidden, or a Colab form) whose source is open, or a cell shown folded that is marked nothing."""
    problems = []
    folded = 0
    for index, (cell, seen) in enumerate(zip(notebook["cells"], shown, strict=True)):
        marks = folding_marks(cell)
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        first = next((line.strip() for line in source.splitlines() if line.strip()), "")[:70]
        collapsed = seen["placeholder"] and not seen["editor"]
        folded += bool(marks)
        if marks and not collapsed:
            why = "" if "source_hidden" in marks else ', and lacks "jupyter": {"source_hidden": true}'
            problems.append(f"cell {index} ({first!r}): JupyterLab shows its source, though it is marked "
                            f"{' and '.join(marks)}{why}")
        elif collapsed and not marks:
            problems.append(f"cell {index} ({first!r}): JupyterLab shows it folded, though nothing marks it so")
    return folded, problems


def screenshot(notebook_path: Path, out: Path, screens: int = 3, width: int = 1280, height: int = 1600,
               chromium: str | None = None, timeout: float = 120,
               log_path: Path | None = None) -> tuple[list[Path], int, list[str]]:
    """Screenshots of the first `screens` screens of the notebook in JupyterLab, written to `out`, and the
    folding check: (the PNG files, how many cells the notebook folds, one line per cell shown otherwise)."""
    if not notebook_path.is_file():
        raise ToolError(f"notebook not found: {notebook_path}")
    try:
        notebook = json.loads(notebook_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ToolError(f"cannot read notebook {notebook_path}: {exc}") from exc
    chromium_bin = find_chromium(chromium or os.environ.get("CHROMIUM"))
    if importlib.util.find_spec("jupyterlab") is None:
        raise ToolError(f"jupyterlab is not installed for {sys.executable}: {PIP_HINT}")
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("screen-*.png"):
        stale.unlink()
    work = Path(tempfile.mkdtemp(prefix="screenshot-notebook-"))
    log_path = log_path or work / "log.txt"
    lab = browser = None
    log = open(log_path, "wb")  # noqa: SIM115  (closed below, after both processes)
    try:
        (work / "nb").mkdir()
        shutil.copyfile(notebook_path, work / "nb" / notebook_path.name)
        lab, url = start_lab(work / "nb", work / "lab", log)
        profile = work / "chromium"
        profile.mkdir()
        browser = DevTools(chromium_bin, ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                          "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
                                          "--disable-background-networking", "--disable-component-update",
                                          "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}",
                                          f"--window-size={width},{height}", "about:blank"], profile, log)
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                            "mobile": False}, session)
        browser.call("Page.enable", {}, session)
        browser.call("Page.navigate", {"url": f"{url}/lab/tree/{urllib.parse.quote(notebook_path.name)}?reset"},
                     session)
        wait_rendered(browser, session, len(notebook["cells"]), timeout)
        hidden, problems = folding_problems(notebook, browser.evaluate(CELLS_JS, session))
        files = []
        for screen in range(screens):
            top, _, visible = browser.evaluate(SCROLL_JS % screen, session)
            if screen and top < screen * visible - 1:  # the notebook ended on the previous screen
                break
            wait_rendered(browser, session, len(notebook["cells"]), timeout)
            png = browser.call("Page.captureScreenshot", {"format": "png"}, session)["data"]
            files.append(out / f"screen-{screen + 1}.png")
            files[-1].write_bytes(base64.b64decode(png))
        return files, hidden, problems
    except ToolError as exc:
        log.flush()
        tail = log_path.read_text(errors="replace").strip().splitlines()[-12:]
        raise ToolError("\n    ".join([f"{exc}", "JupyterLab's and Chromium's output ended:", *tail]) if tail
                        else str(exc)) from exc
    finally:
        if browser:
            browser.close()
        if lab:
            stop(lab)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = " (default: %(default)s)"
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK, help="the notebook" + default)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="folder for screen-N.png"
                        + default)
    parser.add_argument("--screens", type=int, default=3, help="screens to save, from the top" + default)
    parser.add_argument("--width", type=int, default=1280, help="window width, CSS px" + default)
    parser.add_argument("--height", type=int, default=1600, help="window height, CSS px" + default)
    parser.add_argument("--chromium", help="Chromium executable (default: env CHROMIUM, else chromium on PATH)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the notebook to render"
                        + default)
    parser.add_argument("--log", type=Path, help="write JupyterLab's and Chromium's output here")
    args = parser.parse_args(argv)
    began = time.monotonic()
    try:
        files, hidden, problems = screenshot(args.notebook, args.out, args.screens, args.width, args.height,
                                             args.chromium, args.timeout, args.log)
    except ToolError as exc:
        print(f"screenshot_notebook: error: {exc}", file=sys.stderr)
        return 2
    print(f"screenshot_notebook: wrote {', '.join(str(f) for f in files)} in {time.monotonic() - began:.0f} s")
    if problems:
        print(f"screenshot_notebook: {len(problems)} cells are not shown as the notebook marks them (screenshots "
              "written all the same):\n  "
              + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"screenshot_notebook: all {hidden} cells marked folded (source_hidden, Colab form) are shown folded, "
          "the others open")
    return 0


if __name__ == "__main__":
    sys.exit(main())
