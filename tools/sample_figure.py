"""The README's picture: samples of both questions side by side, drawn from the committed artifacts.

Question 1: ten samples of each Fashion-MNIST class from artifacts/q1_samples.npy (stored class by class, an equal
number per class), one row per class. Question 2: the first 100 samples of artifacts/q2_samples.npy (the
unconditional model). `python tools/sample_figure.py` (run by `make figures`) writes docs/samples.png.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLASSES = 10
PER_ROW = 10


def load_samples(path: Path) -> np.ndarray:
    """uint8 images (N, 28, 28) from `path`, or an error that says what is wrong and which command writes it."""
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing; `make run` writes it")
    samples = np.load(path)
    if samples.dtype != np.uint8 or samples.ndim != 3 or len(samples) < CLASSES * PER_ROW:
        raise SystemExit(f"error: {path} holds {samples.dtype} {samples.shape}; expected uint8 (N >= "
                         f"{CLASSES * PER_ROW}, H, W)")
    return samples


def tile(images: np.ndarray, columns: int) -> np.ndarray:
    """Images (R * columns, H, W) laid out row by row as one (R * H, columns * W) image."""
    rows, height, width = len(images) // columns, *images.shape[1:]
    return images[:rows * columns].reshape(rows, columns, height, width).swapaxes(1, 2).reshape(rows * height, -1)


def first_of_each_class(samples: np.ndarray, classes: int, per_class: int) -> np.ndarray:
    """The first `per_class` samples of each class, for samples stored class by class in equal numbers."""
    stored = len(samples) // classes
    return np.concatenate([samples[c * stored:c * stored + per_class] for c in range(classes)])


def draw(q1_samples: np.ndarray, q2_samples: np.ndarray, out: Path) -> None:
    """Both grids in one figure, written to `out` as a PNG. Matplotlib's default style (whatever the caller set) and
    no timestamp make the same inputs give the same file."""
    with plt.style.context("default"):
        fig, axes = plt.subplots(1, 2, figsize=(8, 4.3), dpi=100)
        grids = ((tile(first_of_each_class(q1_samples, CLASSES, PER_ROW), PER_ROW),
                  "Question 1: VQ-VAE and its prior\nFashion-MNIST, one row per class"),
                 (tile(q2_samples[:CLASSES * PER_ROW], PER_ROW),
                  "Question 2: score-based diffusion\nMNIST, unconditional"))
        for ax, (grid, title) in zip(axes, grids):
            ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(title, fontsize=10)
            ax.axis("off")
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, bbox_inches="tight", pad_inches=0.05, metadata={"Software": None})
        plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "samples.png")
    args = parser.parse_args(argv)
    draw(load_samples(args.artifacts / "q1_samples.npy"), load_samples(args.artifacts / "q2_samples.npy"), args.out)
    print(f"sample_figure: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
