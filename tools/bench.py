"""Score our samples and the public anchors' with the same metric, in one run, for every seed that has been run.

For each question, the notebook's own `Scorer` (its classifier, trained with the classifier's own seed, loaded
from `make run`'s checkpoints when present, else trained here with the same code and configuration, about a minute)
embeds the sets and reports FID against the test split with its bootstrap spread, precision and recall, mean
confidence and the class histogram:

* Q1 (Fashion-MNIST): artifacts/q1_samples.npy vs the Keras VQ-VAE recipe's samples and its test
  reconstructions, plus 1000 real training images as the floor.
* Q2 (MNIST): artifacts/q2_samples.npy (the unconditional model) vs Song's tutorial recipe's unconditional
  samples, plus real images; artifacts/q2_guided_samples.npy (guided, beyond the assignment) is scored too.
* Every other seed's samples, artifacts/seeds/seed<N>/q1_samples.npy, q2_samples.npy and q2_guided_samples.npy
  (the notebook's cpu profile run with ASGN3_SEED=N), with the same classifier.

Writes artifacts/bench_q1.json and artifacts/bench_q2.json: the committed run's reports under "sets", with the
FID ratio anchor / ours and whether it meets the project's floor under "committed_meets_floor"; each other seed's
reports, ratio and floor check under "seeds" {"<N>": ...}; and "meets_floor", true when the committed run and every
seed meet it. The floors (issue 36): Q1 ratio >= 9, mean confidence >= 0.90, every class at least 60 times in 1000;
Q2 ratio >= 8, confidence >= 0.93, every digit at least 70 times; guided (under "guided"): ratio >= 11.

The public recipes' samples (the anchors) are not part of the repository: they lie in the folder
/work/shared/anchors beside the CI checkout, which a checkout finds as ../shared/anchors.

usage: python tools/bench.py [--anchors ../shared/anchors] [--artifacts artifacts] [--profile cpu]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from lib.notebook_defs import load_definitions
from lib.seeds import seed_folders

ROOT = Path(__file__).resolve().parent.parent
Q1_FLOOR = {"fid_ratio_at_least": 9.0, "mean_confidence_at_least": 0.90, "every_class_at_least": 60}
Q2_FLOOR = {"fid_ratio_at_least": 8.0, "mean_confidence_at_least": 0.93, "every_class_at_least": 70}
GUIDED_FLOOR = {"fid_ratio_at_least": 11.0}
# per question: its dataset, our sample files of a run's folder and the anchors' files, by set name
QUESTIONS = {
    "q1": {"dataset": "FashionMNIST",
           "ours": {"ours_samples": "q1_samples.npy"},
           "anchors": {"anchor_samples": "keras_vq_recipe_samples.npy",
                       "anchor_test_reconstructions": "keras_vq_recipe_test_recon.npy"}},
    "q2": {"dataset": "MNIST",
           "ours": {"ours_samples": "q2_samples.npy", "ours_guided_samples": "q2_guided_samples.npy"},
           "anchors": {"anchor_samples": "song_recipe_samples.npy"}},
}


def check_anchors(folder: Path) -> None:
    """Stop at once, in one line, when the anchors folder lacks a file (before a minute of classifier training)."""
    missing = [name for question in QUESTIONS.values() for name in question["anchors"].values()
               if not (folder / name).is_file()]
    if missing:
        raise SystemExit(f"error: make bench needs the public recipes' samples ({', '.join(missing)}) in {folder}: the "
                         "anchors folder beside the CI checkout (/work/shared/anchors); if it lies elsewhere, pass "
                         "--anchors DIR (make bench ANCHORS=DIR)")


def load_images(path: Path) -> torch.Tensor:
    """uint8 samples (N, 28, 28) from an .npy file -> float images [N, 1, 28, 28] in [0, 1]."""
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist (run `make run` to write our samples; a seed folder is "
                         "written by `ASGN3_SEED=N make run`, and a run that stopped early must be finished)")
    array = np.load(path)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[1:] != (28, 28):
        raise SystemExit(f"error: {path} holds {array.dtype} {array.shape}; expected uint8 (N, 28, 28)")
    return torch.from_numpy(array).float().div(255).unsqueeze(1)


def load_sets(folder: Path, files: dict) -> dict:
    """{set name: images} of the files {set name: file name} in `folder`."""
    return {name: load_images(folder / file) for name, file in files.items()}


def floor_check(ours: dict, anchor: dict, floor: dict) -> dict:
    """The FID ratio anchor / ours of two quality reports, the floor, and whether `ours` meets every bound of it."""
    ratio = anchor["fid"] / ours["fid"]
    checks = {"fid_ratio_at_least": lambda bound: ratio >= bound,
              "mean_confidence_at_least": lambda bound: ours["mean_confidence"] >= bound,
              "every_class_at_least": lambda bound: min(ours["class_histogram"]) >= bound}
    return {"fid_ratio_anchor_over_ours": ratio, "floor": floor,
            "meets_floor": bool(all(checks[key](bound) for key, bound in floor.items()))}


def q1_check(ours: dict, anchors: dict) -> dict:
    """Question 1's floor check of our reports {"ours_samples"} against the Keras VQ-VAE recipe's samples."""
    return floor_check(ours["ours_samples"], anchors["anchor_samples"], Q1_FLOOR)


def q2_check(ours: dict, anchors: dict) -> dict:
    """Question 2's floor check: the unconditional samples against Song's recipe, and under "guided" the guided
    samples against the same recipe; met when both are."""
    unguided = floor_check(ours["ours_samples"], anchors["anchor_samples"], Q2_FLOOR)
    guided = floor_check(ours["ours_guided_samples"], anchors["anchor_samples"], GUIDED_FLOOR)
    return {**unguided, "guided": guided, "meets_floor": unguided["meets_floor"] and guided["meets_floor"]}


CHECKS = {"q1": q1_check, "q2": q2_check}
METRIC = "FID on the notebook's {} classifier features vs the 10 000 test images"


def bench_result(question: str, sets: dict, seeds: dict) -> dict:
    """The benchmark record of `question` from quality reports: `sets` {name: report} of the committed run (ours),
    the anchors and real images; `seeds` {N: {name: report}} of our sets of the other seeds."""
    check = CHECKS[question]
    committed = check(sets, sets)                      # the committed run's sets hold ours and the anchors' alike
    per_seed = {str(seed): {"sets": ours, **check(ours, sets)} for seed, ours in seeds.items()}
    return {"metric": METRIC.format(QUESTIONS[question]["dataset"]), "sets": sets, **committed,
            "committed_meets_floor": committed["meets_floor"], "seeds": per_seed,
            "meets_floor": committed["meets_floor"] and all(seed["meets_floor"] for seed in per_seed.values())}


def question_sets(question: str, artifacts: Path, anchors: Path) -> tuple[dict, dict]:
    """The images of `question`: ({name: images} of our committed run (artifacts/) and of the anchors, {N: {name:
    images}} of our sets of every other seed (artifacts/seeds/seed<N>/)), each file checked."""
    spec = QUESTIONS[question]
    sets = {**load_sets(artifacts, spec["ours"]), **load_sets(anchors, spec["anchors"])}
    return sets, {seed: load_sets(folder, spec["ours"]) for seed, folder in seed_folders(artifacts).items()}


def bench_question(question: str, report, real: torch.Tensor, sets: dict, seeds: dict) -> dict:
    """The record of `question`: the real images, `sets` and `seeds` (as question_sets gives them) scored with
    report(images) -> quality report, and checked against the floor."""
    scored = {"real_train_images": report(real), **{name: report(images) for name, images in sets.items()}}
    return bench_result(question, scored, {seed: {name: report(images) for name, images in ours.items()}
                                           for seed, ours in seeds.items()})


def scorer(nb, config: dict, dataset: str):
    """The notebook's Scorer of `dataset` (classifier trained with the classifier configuration's own seed) and
    1000 real training images, drawn as the notebook draws them (seed 1)."""
    train, labels = nb.load_split(dataset, train=True)
    test, test_labels = nb.load_split(dataset, train=False)
    return nb.Scorer(train, labels, test, test_labels, config["classifier"]), nb.random_draw(1000, 1, train)[0]


def summary(name: str, result: dict) -> str:
    """One line: the committed run's FID and ratio, each seed's ratio, and whether the floor holds everywhere."""
    seeds = "".join(f", seed {seed} {record['fid_ratio_anchor_over_ours']:.2f}"
                    + ("" if record["meets_floor"] else " (below the floor)")
                    for seed, record in result["seeds"].items())
    return (f"{name}: FID ours {result['sets']['ours_samples']['fid']:.2f}, anchor "
            f"{result['sets']['anchor_samples']['fid']:.2f}, ratio {result['fid_ratio_anchor_over_ours']:.2f}{seeds}; "
            f"meets floor: committed {result['committed_meets_floor']}, every seed {result['meets_floor']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anchors", type=Path, default=ROOT.parent / "shared" / "anchors")
    parser.add_argument("--artifacts", type=Path, default=ROOT / "artifacts",
                        help="our samples (and seeds/seed<N>/), and where bench_q*.json go (default artifacts)")
    parser.add_argument("--profile", default="cpu", help="whose classifier configuration to use (default cpu)")
    args = parser.parse_args(argv)
    check_anchors(args.anchors)
    torch.set_num_threads(2)
    nb = load_definitions(DEVICE=torch.device("cpu"), CHECKPOINTS=ROOT / "checkpoints", DATA_ROOT=str(ROOT / "data"),
                          AMP=None, PRECISION="fp32", PROGRESS=False)
    config = nb.CFG = nb.merged(nb.BASE, nb.OVERRIDES[args.profile])
    images = {question: question_sets(question, args.artifacts, args.anchors) for question in QUESTIONS}
    for question, spec in QUESTIONS.items():
        scorer_, real = scorer(nb, config, spec["dataset"])
        result = bench_question(question, scorer_.report, real, *images[question])
        path = args.artifacts / f"bench_{question}.json"
        path.write_text(json.dumps(nb.without_arrays(result), indent=2) + "\n")   # reports hold features
        print(summary(path.stem, result) + f"  -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
