"""README.md's numbers, generated from the committed artifacts (never typed by hand).

Every measured number README.md states sits between a pair of markers, one pair per kind of statement:

    <!-- results:begin (tools/results_table.py) --> the results table <!-- results:end -->
    <!-- seeds:begin (tools/results_table.py) --> the spread over seeds <!-- seeds:end -->
    <!-- cpu-minutes:begin (...) -->, <!-- t4:begin (...) -->, <!-- gpu-on-cpu:begin (...) --> the run and time
    statements, which may sit inside a sentence and appear more than once

The seeds block sets each headline number of the committed run beside its mean and standard deviation over the
committed run (artifacts/q*_metrics.json) and the runs with other seeds (artifacts/seeds/seed<N>/q*_metrics.json,
written by `ASGN3_SEED=N make run`) of the same pipeline (code and configuration); a seed folder without both
metrics files or of another pipeline is left out, and named. With fewer than two runs the block says that no other
seed has been run.

`python tools/results_table.py` (run by `make readme`) rewrites every block from artifacts/; `--check` only reports
whether they are current (exit 1 if not), which the tests use. The files read are those of `SOURCES`, at the keys
below; artifacts/time_estimate.json at profiles/gpu/minutes/{T4,L4,A100} and profiles/gpu/cpu_hours only.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

from lib.seeds import seed_folders

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"q1_metrics": "make run", "q2_metrics": "make run", "bench_q1": "make bench", "bench_q2": "make bench",
           "time_estimate": "python tools/estimate_time.py"}  # artifact -> the command that writes it
METRICS = ("q1_metrics", "q2_metrics")
SEED_ROWS = {  # the headline numbers of the seeds block: label -> (artifact, key, format)
    "Q1 VQ-VAE, test MSE on [0,1] pixels": ("q1_metrics", "recon_mse", ".5f"),
    "Q1 saved samples, FID": ("q1_metrics", "quality/final_samples/fid", ".1f"),
    "Q2 saved samples, FID": ("q2_metrics", "samples_quality/fid", ".1f"),
    "Q2 saved samples, mean confidence": ("q2_metrics", "samples_quality/mean_confidence", ".3f"),
    "Q2 likelihood, bits/dim": ("q2_metrics", "bits_per_dim", ".3f"),
    "Q2 guided samples, FID": ("q2_metrics", "conditional/samples_quality/fid", ".1f"),
}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin (tools/results_table.py) -->", f"<!-- {name}:end -->"


class Artifact:
    """One JSON file of artifacts/; `artifact["a/b/c"]` reads record["a"]["b"]["c"], and a missing file or key stops
    with a message naming it and the command that writes the file."""

    def __init__(self, folder: Path, name: str):
        self.name, self.path = name, folder / f"{name}.json"
        if not self.path.is_file():
            raise SystemExit(f"error: {self.path} is missing; `{SOURCES[name]}` writes it")
        self.record = json.loads(self.path.read_text())

    def __getitem__(self, keys: str):
        value = self.record
        for depth, key in enumerate(keys.split("/")):
            if not isinstance(value, dict) or key not in value:
                missing = "/".join(keys.split("/")[:depth + 1])
                raise SystemExit(f"error: {self.path} has no {missing}; rerun `{SOURCES[self.name]}`, "
                                 "or read the file's new keys in tools/results_table.py")
            value = value[key]
        return value


def results_table(q1: Artifact, q2: Artifact, b1: Artifact, b2: Artifact) -> str:
    """The results block: the run's times, then one row per headline result with the anchor recipe's score beside."""
    final1, final2, guided = "quality/final_samples/", "samples_quality/", "conditional/samples_quality/"
    anchor1, anchor2 = "sets/anchor_samples/", "sets/anchor_samples/"
    rows = [
        ("Q1 VQ-VAE, test reconstruction",
         f"MSE {q1['recon_mse']:.5f} on [0,1] pixels ({q1['psnr_db']:.1f} dB), {q1['codes_used']} of "
         f"{q1['codebook_size']} codes used",
         f"Keras VQ-VAE example: FID of its test reconstructions {b1['sets/anchor_test_reconstructions/fid']:.1f} "
         f"(ours: {q1['quality/test_reconstructions/fid']:.1f})"),
        (f"Q1 prior, {q1[final1 + 'n']} samples",
         f"FID {q1[final1 + 'fid']:.1f}, confidence {q1[final1 + 'mean_confidence']:.3f}; test NLL "
         f"{q1['prior/nll_bits_per_image']:.0f} bits per image",
         f"FID {b1[anchor1 + 'fid']:.1f}, confidence {b1[anchor1 + 'mean_confidence']:.3f} "
         f"(ratio {b1['fid_ratio_anchor_over_ours']:.2f})"),
        (f"Q2 unconditional score model, {q2[final2 + 'n']} samples",
         f"FID {q2[final2 + 'fid']:.1f}, confidence {q2[final2 + 'mean_confidence']:.3f} "
         f"({q2['final_sampler/sampler'].upper()}, {q2['final_sampler/nfe']} NFE)",
         f"Song's tutorial recipe: FID {b2[anchor2 + 'fid']:.1f}, confidence {b2[anchor2 + 'mean_confidence']:.3f} "
         f"(ratio {b2['fid_ratio_anchor_over_ours']:.2f})"),
        ("Q2 likelihood", f"{q2['bits_per_dim']:.2f} ± {q2['bits_per_dim_standard_error']:.2f} bits/dim on "
         f"{q2['likelihood/n_images']} test images", ""),
        (f"Q2 guided (beyond the assignment), {q2[guided + 'n']} samples",
         f"FID {q2[guided + 'fid']:.1f}, {q2[guided + 'accuracy_vs_intended_class']:.1%} the digit asked for, "
         f"w = {q2['conditional/guidance']:g}",
         f"ratio {b2['guided/fid_ratio_anchor_over_ours']:.2f} against the same unconditional recipe"),
    ]
    lines = [f"Profile `{q1['profile']}` on {q1['device']}: Question 1 took {q1['seconds/total'] / 60:.1f} min, "
             f"Question 2 {q2['seconds/total'] / 60:.1f} min of computation. FID is computed on the features of a "
             "small classifier trained in the notebook, so it compares only within this repository; `make bench` "
             "scores the public recipes' samples with the same classifier in one run.", "",
             "| | ours | public recipe, same metric |", "|---|---|---|"]
    lines += [f"| {name} | {ours} | {anchor} |" for name, ours, anchor in rows]
    return "\n\n" + "\n".join(lines) + "\n\n"


def seed_runs(artifacts: Path, committed: dict) -> tuple[dict, list]:
    """The runs with other seeds to set beside the committed one ({name: Artifact} of artifacts/): ({seed: {name:
    Artifact}} of every seed folder holding both metrics files of the committed run's pipeline, [why each other
    seed folder is left out])."""
    runs, left_out = {}, []
    for seed, folder in seed_folders(artifacts).items():
        missing = [name for name in METRICS if not (folder / f"{name}.json").is_file()]
        if missing:
            left_out.append(f"seed {seed} (no {' or '.join(f'{name}.json' for name in missing)}: an unfinished run)")
            continue
        run = {name: Artifact(folder, name) for name in METRICS}
        if any(run[name]["pipeline"] != committed[name]["pipeline"] for name in METRICS):
            left_out.append(f"seed {seed} (another code or configuration than the committed run's)")
            continue
        runs[seed] = run
    return runs, left_out


def seeds_block(artifacts: Path, committed: dict) -> str:
    """The seeds block: each headline number of the committed run beside its mean ± standard deviation over the
    committed run and those of seed_runs(), or, without another run, that no other seed has been run."""
    others, left_out = seed_runs(artifacts, committed)
    note = f" Left out: {'; '.join(left_out)}." if left_out else ""
    if not others:
        return ("\n\nNo other seed has " + ("a complete run of this code and configuration" if left_out else "been run")
                + ": the spread of these numbers between trainings is not measured (`ASGN3_SEED=N make run` runs the "
                f"`cpu` profile with seed N into artifacts/seeds/seedN/).{note}\n\n")
    seed = committed["q1_metrics"]["seed"]
    runs = {seed: committed, **others}
    seeds = ", ".join(map(str, sorted(runs)))
    rows = []
    for label, (name, key, form) in SEED_ROWS.items():
        values = [run[name][key] for run in runs.values()]
        rows.append(f"| {label} | {committed[name][key]:{form}} | {statistics.mean(values):{form}} ± "
                    f"{statistics.stdev(values):{form}} |")
    lines = [f"The committed run (seed {seed}) beside the mean ± standard deviation over the {len(runs)} runs of the "
             f"same code and configuration, seeds {seeds} (`ASGN3_SEED=N make run` writes artifacts/seeds/seedN/): "
             f"the spread between trainings.{note}", "",
             f"| | committed run (seed {seed}) | mean ± sd over seeds {seeds} |", "|---|---|---|", *rows]
    return "\n\n" + "\n".join(lines) + "\n\n"


def blocks(artifacts: Path) -> dict[str, str]:
    """Each block's text, by marker name."""
    q1, q2 = Artifact(artifacts, "q1_metrics"), Artifact(artifacts, "q2_metrics")
    estimate = Artifact(artifacts, "time_estimate")
    return {
        "results": results_table(q1, q2, Artifact(artifacts, "bench_q1"), Artifact(artifacts, "bench_q2")),
        "seeds": seeds_block(artifacts, {"q1_metrics": q1, "q2_metrics": q2}),
        "cpu-minutes": f"{(q1['seconds/total'] + q2['seconds/total']) / 60:.0f} minutes",
        "t4": f"about {round(estimate['profiles/gpu/minutes/T4'])} minutes on a Colab T4 (an L4: "
              f"{round(estimate['profiles/gpu/minutes/L4'])}, an A100: {round(estimate['profiles/gpu/minutes/A100'])})",
        "gpu-on-cpu": f"about {round(estimate['profiles/gpu/cpu_hours'])} hours on 2 CPU cores",
    }


def rewrite(readme: str, texts: dict[str, str]) -> str:
    """`readme` with every block between its markers replaced by its text; each block must appear at least once."""
    for name, text in texts.items():
        begin, end = markers(name)
        pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)
        if not pattern.search(readme):
            raise SystemExit(f"error: README.md lacks the block {begin} ... {end}; put the markers where the "
                             f"{name} statement belongs")
        replacement = begin + text + end
        readme = pattern.sub(lambda _, block=replacement: block, readme)  # a function: no escapes read in it
    return readme


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md's blocks are not current")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    args = parser.parse_args(argv)
    readme = args.readme.read_text()
    updated = rewrite(readme, blocks(args.artifacts))
    if args.check:
        if updated != readme:
            print(f"{args.readme}: the generated numbers are stale; run `make readme` (tools/results_table.py)")
            return 1
        return 0
    args.readme.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
