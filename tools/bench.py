"""Score our committed samples and the public anchors' with the same metric, in one run.

For each question, the notebook's own `Scorer` (its classifier loaded from `make run`'s checkpoints when present,
else trained here with the same code and configuration, about a minute) embeds the sets and reports FID against
the test split, mean confidence and the class histogram:

* Q1 (Fashion-MNIST): artifacts/q1_samples.npy vs the Keras VQ-VAE recipe's samples and its test
  reconstructions, plus 1000 real training images as the floor.
* Q2 (MNIST): artifacts/q2_samples.npy (the unconditional model) vs Song's tutorial recipe's unconditional
  samples, plus real images; artifacts/q2_guided_samples.npy (guided, beyond the assignment) is scored too.

Writes artifacts/bench_q1.json and artifacts/bench_q2.json, with the FID ratio anchor / ours and whether the
project's floors are met (Q1: ratio >= 5.5, mean confidence >= 0.90, every class at least 60 times in 1000;
Q2: ratio >= 3.5, confidence >= 0.92, every digit at least 60 times; guided: ratio >= 4).

The public recipes' samples (the anchors) are not part of the repository: they lie in the folder
/work/shared/anchors beside the CI checkout, which a checkout finds as ../shared/anchors.

usage: python tools/bench.py [--anchors ../shared/anchors] [--profile cpu]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from lib.notebook_defs import load_definitions

ROOT = Path(__file__).resolve().parent.parent
ANCHOR_FILES = ("keras_vq_recipe_samples.npy", "keras_vq_recipe_test_recon.npy", "song_recipe_samples.npy")
Q1_FLOOR = {"fid_ratio_at_least": 5.5, "mean_confidence_at_least": 0.90, "every_class_at_least": 60}
Q2_FLOOR = {"fid_ratio_at_least": 3.5, "mean_confidence_at_least": 0.92, "every_class_at_least": 60}
GUIDED_FLOOR = {"fid_ratio_at_least": 4.0}


def check_anchors(folder: Path) -> None:
    """Stop at once, in one line, when the anchors folder lacks a file (before a minute of classifier training)."""
    missing = [name for name in ANCHOR_FILES if not (folder / name).is_file()]
    if missing:
        raise SystemExit(f"error: make bench needs the public recipes' samples ({', '.join(missing)}) in {folder}: the "
                         "anchors folder beside the CI checkout (/work/shared/anchors); if it lies elsewhere, pass "
                         "--anchors DIR (make bench ANCHORS=DIR)")


def load_images(path: Path) -> torch.Tensor:
    """uint8 samples (N, 28, 28) from an .npy file -> float images [N, 1, 28, 28] in [0, 1]."""
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist (run `make run` to write our samples)")
    array = np.load(path)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[1:] != (28, 28):
        raise SystemExit(f"error: {path} holds {array.dtype} {array.shape}; expected uint8 (N, 28, 28)")
    return torch.from_numpy(array).float().div(255).unsqueeze(1)


def score_sets(nb, config: dict, dataset: str, sets: dict) -> dict:
    """Quality reports of named image sets [N, 1, 28, 28] against the test split, with one classifier."""
    train, labels = nb.load_split(dataset, train=True)
    test, test_labels = nb.load_split(dataset, train=False)
    scorer = nb.Scorer(train, labels, test, test_labels, config["classifier"])
    real = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[:1000]]
    return {"real_train_images": scorer.report(real), **{name: scorer.report(images) for name, images in sets.items()}}


def bench_result(dataset: str, sets: dict, floor: dict) -> dict:
    """The benchmark record: every set's report, the FID ratio anchor / ours, and whether `floor` is met."""
    ours = sets["ours_samples"]
    ratio = sets["anchor_samples"]["fid"] / ours["fid"]
    checks = {"fid_ratio_at_least": lambda bound: ratio >= bound,
              "mean_confidence_at_least": lambda bound: ours["mean_confidence"] >= bound,
              "every_class_at_least": lambda bound: min(ours["class_histogram"]) >= bound}
    return {"metric": f"FID on the notebook's {dataset} classifier features vs the 10 000 test images",
            "sets": sets, "fid_ratio_anchor_over_ours": ratio, "floor": floor,
            "meets_floor": bool(all(checks[key](bound) for key, bound in floor.items()))}


def q1_result(reports: dict) -> dict:
    """Question 1's record: our samples against the Keras VQ-VAE recipe's."""
    return bench_result("Fashion-MNIST", reports, Q1_FLOOR)


def q2_result(reports: dict) -> dict:
    """Question 2's record: the unconditional samples against Song's recipe, and under `guided` the guided samples'
    ratio against the same recipe; its floor is met when both are."""
    result = bench_result("MNIST", reports, Q2_FLOOR)
    guided = bench_result("MNIST", {**reports, "ours_samples": reports["ours_guided_samples"]}, GUIDED_FLOOR)
    result["guided"] = {key: guided[key] for key in ("fid_ratio_anchor_over_ours", "floor", "meets_floor")}
    result["meets_floor"] = result["meets_floor"] and guided["meets_floor"]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anchors", type=Path, default=ROOT.parent / "shared" / "anchors")
    parser.add_argument("--profile", default="cpu", help="whose classifier configuration to use (default cpu)")
    args = parser.parse_args(argv)
    check_anchors(args.anchors)
    torch.set_num_threads(2)
    nb = load_definitions(DEVICE=torch.device("cpu"), CHECKPOINTS=ROOT / "checkpoints", DATA_ROOT=str(ROOT / "data"),
                          AMP=None, PROGRESS=False)
    config = nb.CFG = nb.merged(nb.BASE, nb.OVERRIDES[args.profile])
    artifacts = ROOT / "artifacts"

    q1 = q1_result(score_sets(nb, config, "FashionMNIST", {
        "ours_samples": load_images(artifacts / "q1_samples.npy"),
        "anchor_samples": load_images(args.anchors / "keras_vq_recipe_samples.npy"),
        "anchor_test_reconstructions": load_images(args.anchors / "keras_vq_recipe_test_recon.npy")}))
    q2 = q2_result(score_sets(nb, config, "MNIST", {
        "ours_samples": load_images(artifacts / "q2_samples.npy"),
        "ours_guided_samples": load_images(artifacts / "q2_guided_samples.npy"),
        "anchor_samples": load_images(args.anchors / "song_recipe_samples.npy")}))

    for name, result in (("bench_q1", q1), ("bench_q2", q2)):
        path = artifacts / f"{name}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"{name}: FID ours {result['sets']['ours_samples']['fid']:.2f}, anchor "
              f"{result['sets']['anchor_samples']['fid']:.2f}, ratio {result['fid_ratio_anchor_over_ours']:.2f}, "
              f"meets floor: {result['meets_floor']}  -> {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
