"""Tests for the benchmark, README and figure tools, each against numbers computed here independently.

The committed artifacts are checked only for their schema and their provenance (that this code, run on what they
hold, writes them), never as proof that a floor is met.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
ARTIFACTS = ROOT / "artifacts"
sys.path.insert(0, str(TOOLS))

import bench  # noqa: E402
import estimate_time  # noqa: E402
import results_table  # noqa: E402
import sample_figure  # noqa: E402

SPEED_STAGES = ("vqvae_train_step", "prior_train_step", "score_train_step", "sampler_step_unguided",
                "sampler_step_guided", "classifier_feature_pass")


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_bench_speed_smoke_writes_every_stage(tmp_path):
    out = tmp_path / "speed.json"
    result = run_tool(str(TOOLS / "bench_speed.py"), "--smoke", "--out", str(out))
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["device"] == "cpu"
    assert set(record["stages"]) == set(SPEED_STAGES)
    for row in record["stages"].values():
        assert row["baseline_per_s"] > 0 and row["adopted_per_s"] > 0 and row["settings"]
        assert row["speedup"] == pytest.approx(row["adopted_per_s"] / row["baseline_per_s"])



def report(fid: float, confidence: float = 0.95, rarest: int = 100) -> dict:
    """A quality report as the notebook's quality_report writes it, with a chosen FID, confidence and rarest class."""
    return {"n": 1000, "fid": fid, "mean_confidence": confidence, "class_histogram": [rarest] + [100] * 9}


def test_bench_ratio_is_the_anchors_fid_over_ours():
    record = bench.q1_result({"ours_samples": report(8.0), "anchor_samples": report(44.0)})
    assert record["fid_ratio_anchor_over_ours"] == pytest.approx(5.5)
    assert record["floor"] == bench.Q1_FLOOR and record["meets_floor"]  # 5.5 >= 5.5, 0.95 >= 0.90, 100 >= 60


@pytest.mark.parametrize("ours,anchor,meets", [
    (report(10.0), report(54.0), False),                  # ratio 5.4 < 5.5
    (report(10.0, confidence=0.89), report(60.0), False),  # confidence below 0.90
    (report(10.0, rarest=59), report(60.0), False),       # one class drawn 59 times
    (report(10.0, confidence=0.90, rarest=60), report(55.0), True),  # every bound met exactly
])
def test_bench_floor_fails_when_any_one_bound_fails(ours, anchor, meets):
    assert bench.q1_result({"ours_samples": ours, "anchor_samples": anchor})["meets_floor"] is meets


@pytest.mark.parametrize("guided_fid,meets", [(10.0, True), (30.0, False)])
def test_question2_floor_needs_the_guided_ratio_too(guided_fid, meets):
    record = bench.q2_result({"ours_samples": report(20.0), "ours_guided_samples": report(guided_fid),
                              "anchor_samples": report(90.0)})
    assert record["fid_ratio_anchor_over_ours"] == pytest.approx(4.5)
    assert record["guided"]["fid_ratio_anchor_over_ours"] == pytest.approx(90.0 / guided_fid)
    assert record["meets_floor"] is meets  # the unconditional floor alone is met (4.5 >= 3.5)


def test_bench_without_anchors_says_in_one_line_what_it_needs_and_where(tmp_path):
    result = run_tool(str(TOOLS / "bench.py"), "--anchors", str(tmp_path / "anchors"))
    assert result.returncode == 1
    message = result.stderr.strip()
    assert "\n" not in message and str(tmp_path / "anchors") in message
    assert "/work/shared/anchors" in message and "--anchors" in message


@pytest.mark.parametrize("name,result", [("bench_q1", bench.q1_result), ("bench_q2", bench.q2_result)])
def test_committed_bench_file_is_what_bench_writes_from_its_own_reports(name, result):
    """Provenance, not proof: the file's ratios and floors are those bench.py computes from the reports it holds."""
    record = json.loads((ARTIFACTS / f"{name}.json").read_text())
    assert {"ours_samples", "anchor_samples", "real_train_images"} <= set(record["sets"])
    for report_ in record["sets"].values():
        assert set(report_) >= {"n", "fid", "mean_confidence", "class_histogram"}
        assert len(report_["class_histogram"]) == 10

    def without_flags(value):
        if isinstance(value, dict):
            return {key: without_flags(item) for key, item in value.items() if key != "meets_floor"}
        return value

    assert without_flags(result(record["sets"])) == without_flags(record)


def test_committed_speed_bench_has_every_stage_and_its_speedups_are_its_rates():
    """Schema and provenance of artifacts/bench_speed.json: every stage, each speedup the ratio of its two rates."""
    record = json.loads((ARTIFACTS / "bench_speed.json").read_text())
    assert record["device"] == "cpu" and record["rounds"] >= 5
    assert set(record["stages"]) == set(SPEED_STAGES)
    for row in record["stages"].values():
        assert row["speedup"] == pytest.approx(row["adopted_per_s"] / row["baseline_per_s"])


def write_artifacts(folder: Path, t4_minutes: float = 24.6) -> Path:
    """A synthetic artifacts/ folder holding only what tools/results_table.py reads, with round known numbers."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "q1_metrics": {"profile": "cpu", "device": "cpu", "seconds": {"total": 1200.0}, "recon_mse": 0.001234,
                       "psnr_db": 29.087, "codes_used": 500, "codebook_size": 512,
                       "prior": {"nll_bits_per_image": 199.6},
                       "quality": {"final_samples": {"n": 300, "fid": 12.34, "mean_confidence": 0.9012},
                                   "test_reconstructions": {"fid": 5.55}}},
        "q2_metrics": {"seconds": {"total": 1860.0}, "final_sampler": {"sampler": "ode", "nfe": 120},
                       "samples_quality": {"n": 400, "fid": 21.06, "mean_confidence": 0.93},
                       "bits_per_dim": 2.345, "bits_per_dim_standard_error": 0.021, "likelihood": {"n_images": 64},
                       "conditional": {"guidance": 1.5, "samples_quality": {
                           "n": 200, "fid": 9.87, "accuracy_vs_intended_class": 0.8766}}},
        "bench_q1": {"fid_ratio_anchor_over_ours": 5.0,
                     "sets": {"anchor_samples": {"fid": 61.7, "mean_confidence": 0.7},
                              "anchor_test_reconstructions": {"fid": 17.25}}},
        "bench_q2": {"fid_ratio_anchor_over_ours": 4.25, "guided": {"fid_ratio_anchor_over_ours": 9.06},
                     "sets": {"anchor_samples": {"fid": 89.5, "mean_confidence": 0.8}}},
        "time_estimate": {"profiles": {"gpu": {"minutes": {"T4": t4_minutes, "L4": 12.6, "A100": 7.4},
                                               "cpu_hours": 9.4}}},
    }
    for name, record in files.items():
        (folder / f"{name}.json").write_text(json.dumps(record))
    return folder


def test_results_table_puts_each_number_in_its_row(tmp_path):
    blocks = results_table.blocks(write_artifacts(tmp_path / "artifacts"))
    rows = {line.split(" | ")[0].strip("| "): line for line in blocks["results"].splitlines() if line.startswith("| Q")}
    assert "Question 1 took 20.0 min, Question 2 31.0 min" in blocks["results"]  # 1200 s, 1860 s
    assert "MSE 0.00123 on [0,1] pixels (29.1 dB), 500 of 512 codes used" in rows["Q1 VQ-VAE, test reconstruction"]
    assert "test reconstructions 17.2 (ours: 5.5)" in rows["Q1 VQ-VAE, test reconstruction"]
    assert "FID 12.3, confidence 0.901; test NLL 200 bits per image" in rows["Q1 prior, 300 samples"]
    assert "FID 61.7, confidence 0.700 (ratio 5.00)" in rows["Q1 prior, 300 samples"]
    assert "FID 21.1, confidence 0.930 (ODE, 120 NFE)" in rows["Q2 unconditional score model, 400 samples"]
    assert "(ratio 4.25)" in rows["Q2 unconditional score model, 400 samples"]
    assert "2.35 ± 0.02 bits/dim on 64 test images" in rows["Q2 likelihood"]
    guided = rows["Q2 guided (beyond the assignment), 200 samples"]
    assert "FID 9.9, 87.7% the digit asked for, w = 1.5 | ratio 9.06" in guided
    assert blocks["cpu-minutes"] == "51 minutes"  # (1200 + 1860) / 60
    assert blocks["t4"] == "about 25 minutes on a Colab T4 (an L4: 13, an A100: 7)"
    assert blocks["gpu-on-cpu"] == "about 9 hours on 2 CPU cores"


def test_readme_blocks_are_rewritten_everywhere_and_checked(tmp_path):
    artifacts = write_artifacts(tmp_path / "artifacts")
    begin, end = results_table.markers("t4")
    readme = tmp_path / "README.md"
    readme.write_text("".join(f"{name}: {b}old{e}\n" for name in ("results", "cpu-minutes", "t4", "gpu-on-cpu")
                              for b, e in [results_table.markers(name)]) + f"again: {begin}stale{end}\n")
    args = ["--readme", str(readme), "--artifacts", str(artifacts)]
    assert results_table.main(["--check", *args]) == 1
    assert results_table.main(args) == 0
    assert readme.read_text().count(f"{begin}about 25 minutes on a Colab T4 (an L4: 13, an A100: 7){end}") == 2
    assert results_table.main(["--check", *args]) == 0
    write_artifacts(artifacts, t4_minutes=31.2)  # a new estimate makes the README stale
    assert results_table.main(["--check", *args]) == 1


def test_results_table_names_a_missing_key_and_a_missing_block(tmp_path):
    renamed = write_artifacts(tmp_path / "renamed")
    (renamed / "time_estimate.json").write_text(json.dumps({"profiles": {"gpu": {"t4_min": 25, "cpu_hours": 9}}}))
    with pytest.raises(SystemExit, match="time_estimate.json has no profiles/gpu/minutes; rerun"):
        results_table.blocks(renamed)
    missing = write_artifacts(tmp_path / "missing")
    q2 = json.loads((missing / "q2_metrics.json").read_text())
    del q2["seconds"]["total"]
    (missing / "q2_metrics.json").write_text(json.dumps(q2))
    with pytest.raises(SystemExit, match="q2_metrics.json has no seconds/total; rerun `make run`"):
        results_table.blocks(missing)
    with pytest.raises(SystemExit, match="lacks the block <!-- t4:begin"):
        results_table.rewrite("no markers here", {"t4": "about 25 minutes on a Colab T4"})


def test_readme_results_table_is_current():
    result = run_tool(str(TOOLS / "results_table.py"), "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_is_short_and_shows_the_committed_samples():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 125
    assert "](docs/samples.png)" in readme and (ROOT / "docs" / "samples.png").is_file()


def test_tile_lays_images_out_row_by_row():
    images = np.arange(6 * 2 * 3).reshape(6, 2, 3)
    grid = sample_figure.tile(images, columns=3)
    assert grid.shape == (2 * 2, 3 * 3)
    for index, image in enumerate(images):
        row, column = divmod(index, 3)
        assert np.array_equal(grid[row * 2:(row + 1) * 2, column * 3:(column + 1) * 3], image)


def test_first_of_each_class_takes_the_head_of_each_class_block():
    samples = np.repeat(np.arange(10), 7)[:, None, None] * 10 + np.tile(np.arange(7), 10)[:, None, None]
    picked = sample_figure.first_of_each_class(samples, classes=10, per_class=3)
    assert picked[:, 0, 0].tolist() == [10 * c + i for c in range(10) for i in range(3)]


def test_readme_figure_is_drawn_from_the_committed_samples(tmp_path):
    """Provenance of docs/samples.png: `make figures` on today's artifacts redraws it byte for byte."""
    assert sample_figure.main(["--out", str(tmp_path / "samples.png")]) == 0
    assert (tmp_path / "samples.png").read_bytes() == (ROOT / "docs" / "samples.png").read_bytes(), \
        "docs/samples.png is stale: run `make figures`"


def test_stage_work_counts_the_notebooks_calls():
    """stage_work lists each stage's calls at the batches the notebook uses: optimiser steps of the trainings, 49
    network passes per batch of sampled code grids (a guided batch doubled), one pass per score evaluation (a guided
    sampler halving its steps on a doubled batch)."""
    config = {"subset": None, "classifier": {"epochs": 2, "batch": 128},
              "q1": {"vqvae": {"epochs": 3, "batch": 64}, "ablation": {"n_images": 1000, "epochs": 2},
                     "prior": {"epochs": 1, "batch": 100}, "samples_per_class": 10,
                     "sampling_grid": {"temperatures": [1.0], "guidance": [0.0, 1.0], "per_class": 1},
                     "completion": {"kept_rows": 3, "per_class": 1, "samples": 2}},
              "q2": {"train": {"epochs": 2, "batch": 128}, "conditional": {"train": {"epochs": 1}, "guidance": [0, 1]},
                     "sampler_grid": {"n_images": 10, "nfe": [4], "snr_sweep": []}, "n_samples": 10,
                     "sample_batch": 10, "likelihood": {"n_images": 64, "steps": 5}}}
    work = estimate_time.stage_work(config)
    assert work["q1 vqvae"][0] == ("vqvae_step", 3 * math.ceil(60000 / 64), 64)
    assert work["q1 prior"][0] == ("prior_step", 600, 100)
    assert work["q1 ablation"][0] == ("ablation_step", 3 * 2 * math.ceil(1000 / 64), 64)
    assert work["q2 score network"] == [("score_step", 2 * math.ceil(60000 / 128), 128)]
    assert work["q1 sampling"] == [("prior_pass", 49, 100), ("prior_pass", 49, 200),      # plain, saved (guided)
                                   ("prior_pass", 49, 10), ("prior_pass", 49, 20),       # the grid: w = 0, w = 1
                                   ("prior_pass", 28, 10), ("prior_pass", 28, 10)]       # two completions
    assert work["q2 samples"] == [("score_pass", 4, 80), ("score_pass", 4, 10)]
    assert work["q2 guidance"] == [("score_pass", 2, 10), ("score_pass", 2, 20), ("score_pass", 2, 20)]
    assert work["q2 likelihood"] == [("score_vjp", 10, 64)]


def test_stated_time_estimates_match_the_estimate_tool(nb):
    """The configuration cell's expected minutes and hours are those of artifacts/time_estimate.json (GPUs) and of
    the committed cpu run (artifacts/q*_metrics.json)."""
    estimate = json.loads((ARTIFACTS / "time_estimate.json").read_text())
    assert nb.EXPECTED_MINUTES["gpu"] == {gpu: round(minutes) for gpu, minutes in
                                          estimate["profiles"]["gpu"]["minutes"].items()}
    assert nb.GPU_PROFILE_CPU_HOURS == round(estimate["profiles"]["gpu"]["cpu_hours"])
    seconds = sum(json.loads((ARTIFACTS / f"q{n}_metrics.json").read_text())["seconds"]["total"] for n in (1, 2))
    assert nb.EXPECTED_MINUTES["cpu"] == 5 * round(seconds / 60 / 5), "the cpu profile's minutes, to the nearest 5"


def test_gpu_check_without_cuda_says_so_in_one_line_and_succeeds(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the check would run for real")
    out = tmp_path / "gpu_check.json"
    result = run_tool(str(TOOLS / "gpu_check.py"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1 and "no CUDA" in result.stdout
    assert not out.exists()


@pytest.mark.slow
def test_gpu_check_runs_every_operation_of_a_profile_and_extrapolates_its_stages(tmp_path):
    """The same code as on a GPU, on the CPU with the smoke profile: every operation that estimate_time lists is
    trained or timed, the checks pass, and the extrapolated minutes are the sum of calls times seconds."""
    out = tmp_path / "gpu_check.json"
    result = run_tool(str(TOOLS / "gpu_check.py"), "--allow-cpu", "--profile", "smoke", "--steps", "4",
                      "--passes", "1", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(out.read_text())
    assert record["choices"]["profile"] == "smoke" and all(record["checks"].values())
    steps = [m for m in record["operations"].values() if "ok" in m]
    assert steps and all(m["finite"] and m["steps"] == 4 for m in steps)
    assert record["run_all_minutes"] == pytest.approx(sum(record["minutes_per_stage"].values()))
    assert all(minutes > 0 for minutes in record["minutes_per_stage"].values())
