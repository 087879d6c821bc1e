"""Checks that run inside the kernel while the tests execute the notebook (installed by an IPython start-up file).

* Warnings: every warning is shown (none hidden by the default filters), and one raised while the notebook's own
  code is on the stack (a cell, or a function a cell defined) becomes an error in that cell, so that a deprecation
  in how we call a library fails the test today rather than breaking the notebook tomorrow.
* Figures: before a figure is shown, its text is measured at the size the PDF prints it (the export prints a
  figure at the notebook's display width, at most the page's): no text under 7 pt, no two text elements overlapping,
  no legend covering a plotted point. Findings are appended to the JSON-lines file named by the environment
  variable NOTEBOOK_AUDIT_FILE, one record per figure.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import warnings

PAGE_WIDTH_PX = 710            # A4 minus the print margins of tools/export_template/print/print.css, CSS pixels
CSS_PX_PER_INCH = 96
DISPLAY_PX_PER_INCH = 80       # the inline backend's figure.dpi (retina PNGs are shown at half their pixels)
MIN_PRINTED_PT = 7.0


def is_notebook_frame(filename: str) -> bool:
    """True for the code of a notebook cell as ipykernel compiles it (/tmp/ipykernel_<pid>/<hash>.py)."""
    return "ipykernel_" in filename or filename.startswith("<ipython-input")


def raise_for_notebook_warnings() -> None:
    """Show every warning; turn one raised with notebook code on the stack into an error."""
    original = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        frame = sys._getframe(1)
        while frame is not None:
            if is_notebook_frame(frame.f_code.co_filename):
                raise RuntimeError(f"a warning raised by the notebook's own call: {category.__name__}: {message} "
                                   f"({filename}:{lineno})")
            frame = frame.f_back
        original(message, category, filename, lineno, file, line)

    warnings.simplefilter("always")
    warnings.showwarning = showwarning


def printed_scale(figure, renderer) -> float:
    """Printed size over drawn size of `figure`: the PNG is cropped to its tight box, displayed at 80 px per inch
    of it, and scaled down to the page width if wider."""
    width_in = figure.get_tightbbox(renderer).width
    return min(PAGE_WIDTH_PX, DISPLAY_PX_PER_INCH * width_in) / (CSS_PX_PER_INCH * width_in)


def undrawn_tick_labels(figure) -> set:
    """The ids of tick labels whose tick lies outside its axis's view limits: matplotlib keeps them, but does not
    draw them."""
    hidden = set()
    for axes in figure.axes:
        for axis, limits in ((axes.xaxis, axes.get_xlim()), (axes.yaxis, axes.get_ylim())):
            low, high = sorted(limits)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - 1e-9 * (high - low) <= tick.get_loc() <= high + 1e-9 * (high - low):
                    hidden |= {id(tick.label1), id(tick.label2)}
    return hidden


def visible_texts(figure) -> list:
    """The figure's drawn, non-empty text artists (titles, labels, tick labels, legend entries, annotations)."""
    from matplotlib.text import Text

    hidden = undrawn_tick_labels(figure)
    return [text for text in figure.findobj(Text) if text.get_visible() and text.get_text().strip()
            and id(text) not in hidden and (text.axes is None or text.axes.get_visible())]


def plotted_points(axes):
    """Display coordinates [N, 2] of the data points of the lines and scatter collections of `axes`."""
    import numpy as np

    points = [line.get_transform().transform(line.get_xydata()) for line in axes.get_lines()
              if line.get_visible() and len(line.get_xydata())]
    points += [collection.get_offset_transform().transform(collection.get_offsets())
               for collection in axes.collections if len(collection.get_offsets())]
    return np.concatenate(points) if points else np.zeros((0, 2))


def audit_figure(figure) -> list[str]:
    """The problems of `figure` at print size, each a sentence naming the text involved."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    scale = printed_scale(figure, renderer)
    problems = []
    texts = visible_texts(figure)
    for text in texts:
        printed = text.get_fontsize() * scale
        if printed < MIN_PRINTED_PT:
            problems.append(f"text {text.get_text()!r} prints at {printed:.1f} pt (< {MIN_PRINTED_PT} pt)")
    boxes = [(text, text.get_window_extent(renderer)) for text in texts]
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        overlap_w = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        overlap_h = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        if overlap_w > 1 and overlap_h > 1:
            problems.append(f"texts {a.get_text()!r} and {b.get_text()!r} overlap")
    for axes in figure.axes:
        legend = axes.get_legend()
        if legend is None or not legend.get_visible():
            continue
        box = legend.get_window_extent(renderer)
        points = plotted_points(axes)
        inside = ((points[:, 0] > box.x0) & (points[:, 0] < box.x1) & (points[:, 1] > box.y0)
                  & (points[:, 1] < box.y1))
        if inside.any():
            problems.append(f"the legend of {axes.get_title()!r} covers {int(inside.sum())} plotted points")
    return problems


def title_of(figure) -> str:
    suptitle = figure._suptitle.get_text() if figure._suptitle is not None else ""
    return suptitle or next((axes.get_title() for axes in figure.axes if axes.get_title()), "(untitled)")


def audit_figures_before_show(path: str) -> None:
    """Wrap matplotlib.pyplot.show so that every open figure is audited, and the result recorded, first."""
    import matplotlib.pyplot as plt

    show = plt.show

    def audited_show(*args, **kwargs):
        for number in plt.get_fignums():
            figure = plt.figure(number)
            record = {"figure": title_of(figure), "problems": audit_figure(figure)}
            with open(path, "a") as file:
                file.write(json.dumps(record) + "\n")
        return show(*args, **kwargs)

    plt.show = audited_show


def install() -> None:
    raise_for_notebook_warnings()
    if os.environ.get("NOTEBOOK_AUDIT_FILE"):
        audit_figures_before_show(os.environ["NOTEBOOK_AUDIT_FILE"])
