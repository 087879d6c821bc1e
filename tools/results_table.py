"""The README's results table, generated from the committed artifacts (never typed by hand).

`python tools/results_table.py` rewrites the block between the two markers in README.md;
`--check` only reports whether the block is current (exit 1 if not), which the tests use.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- results:begin (tools/results_table.py) -->", "<!-- results:end -->"


def load(name: str) -> dict:
    path = ROOT / "artifacts" / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing; run `make run` (metrics) and `make bench` (bench files) first")
    return json.loads(path.read_text())


def table() -> str:
    """The Markdown block: one row per headline result, with the anchor recipe's score beside ours."""
    q1, q2, b1, b2 = load("q1_metrics"), load("q2_metrics"), load("bench_q1"), load("bench_q2")
    samples1, samples2 = q1["quality"]["final_samples"], q2["samples_quality"]
    guided = q2["conditional"]["samples_quality"]
    anchor1, anchor2 = b1["sets"]["anchor_samples"], b2["sets"]["anchor_samples"]
    minutes = {name: m["seconds"]["total"] / 60 for name, m in (("q1", q1), ("q2", q2))}
    rows = [
        ("Q1 VQ-VAE, test reconstruction",
         f"MSE {q1['recon_mse']:.5f} on [0,1] pixels ({q1['psnr_db']:.1f} dB), {q1['codes_used']} of "
         f"{q1['codebook_size']} codes used", f"Keras VQ-VAE example: FID of its test reconstructions "
         f"{b1['sets']['anchor_test_reconstructions']['fid']:.1f} "
         f"(ours: {q1['quality']['test_reconstructions']['fid']:.1f})"),
        ("Q1 prior, 1000 samples",
         f"FID {samples1['fid']:.1f}, confidence {samples1['mean_confidence']:.3f}; test NLL "
         f"{q1['prior']['nll_bits_per_image']:.0f} bits per image",
         f"FID {anchor1['fid']:.1f}, confidence {anchor1['mean_confidence']:.3f} (ratio "
         f"{b1['fid_ratio_anchor_over_ours']:.2f})"),
        ("Q2 unconditional score model, 1000 samples",
         f"FID {samples2['fid']:.1f}, confidence {samples2['mean_confidence']:.3f} "
         f"({q2['final_sampler']['sampler'].upper()}, {q2['final_sampler']['nfe']} NFE)",
         f"Song's tutorial recipe: FID {anchor2['fid']:.1f}, confidence {anchor2['mean_confidence']:.3f} "
         f"(ratio {b2['fid_ratio_anchor_over_ours']:.2f})"),
        ("Q2 likelihood", f"{q2['bits_per_dim']:.2f} ± {q2['bits_per_dim_standard_error']:.2f} bits/dim on "
         f"{q2['likelihood']['n_images']} test images", ""),
        ("Q2 guided (beyond the assignment), 1000 samples",
         f"FID {guided['fid']:.1f}, {guided['accuracy_vs_intended_class']:.1%} the digit asked for, w = "
         f"{q2['conditional']['guidance']:g}",
         f"ratio {b2['guided']['fid_ratio_anchor_over_ours']:.2f} against the same unconditional recipe"),
    ]
    lines = [BEGIN, "", f"Profile `{q1['profile']}` on {q1['device']}: Question 1 took {minutes['q1']:.1f} min, "
             f"Question 2 {minutes['q2']:.1f} min of computation. FID is computed on the features of a small "
             "classifier trained in the notebook, so it compares only within this repository; `make bench` scores "
             "the public recipes' samples (`../shared/anchors`) with the same classifier in one run.", "",
             "| | ours | public recipe, same metric |", "|---|---|---|"]
    lines += [f"| {name} | {ours} | {anchor} |" for name, ours, anchor in rows]
    return "\n".join(lines + ["", END])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md's block is not current")
    args = parser.parse_args(argv)
    readme = (ROOT / "README.md").read_text()
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"error: README.md lacks the markers {BEGIN!r} and {END!r}")
    head, rest = readme.split(BEGIN, 1)
    updated = head + table() + rest.split(END, 1)[1]
    if args.check:
        if updated != readme:
            print("README.md's results table is stale: run `python tools/results_table.py`")
            return 1
        return 0
    (ROOT / "README.md").write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
