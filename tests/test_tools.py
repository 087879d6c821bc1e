"""Tests for the benchmark, estimate and README tools, and for what the committed numbers claim."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
ARTIFACTS = ROOT / "artifacts"
sys.path.insert(0, str(TOOLS))

import estimate_time  # noqa: E402

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


def test_committed_speed_bench_meets_the_floor():
    record = json.loads((ARTIFACTS / "bench_speed.json").read_text())
    assert record["device"] == "cpu" and record["rounds"] >= 5
    assert set(record["stages"]) == set(SPEED_STAGES)
    assert record["stages"]["score_train_step"]["speedup"] >= 1.5


def test_committed_sample_benches_meet_their_floors():
    for name in ("bench_q1", "bench_q2"):
        record = json.loads((ARTIFACTS / f"{name}.json").read_text())
        assert record["meets_floor"], f"{name}: {record['floor']} not met"


def test_estimate_counts_the_notebooks_steps():
    """With unit costs, each training stage's fixed-cost count is its optimiser steps."""
    config = {"subset": None, "classifier": {"epochs": 2, "batch": 128},
              "q1": {"vqvae": {"epochs": 3, "batch": 64}, "ablation": {"n_images": 1000, "epochs": 2},
                     "prior": {"epochs": 1, "batch": 100}, "samples_per_class": 10,
                     "sampling_grid": {"temperatures": [1.0], "guidance": [0.0, 1.0], "per_class": 1}},
              "q2": {"train": {"epochs": 2, "batch": 128}, "conditional": {"train": {"epochs": 1}, "guidance": [0, 1]},
                     "sampler_grid": {"n_images": 10, "nfe": [4], "snr_sweep": []}, "n_samples": 10,
                     "sample_batch": 10, "likelihood": {"n_images": 64, "steps": 5}}}
    stages = estimate_time.stages(config, {key: 1.0 for key in (
        "ablation_step", "vqvae_step", "vqvae_forward", "vqvae_encode", "prior_step", "prior_forward", "score_step",
        "score_forward", "classifier_step", "classifier_forward")})
    assert stages["q1 vqvae"] == (3 * 60000, 3 * math.ceil(60000 / 64))
    assert stages["q1 prior"] == (60000, 600)
    assert stages["q2 score network"] == (2 * 60000, 2 * math.ceil(60000 / 128))
    assert stages["q1 ablation"] == (3 * 2 * 1000, 3 * 2 * math.ceil(1000 / 64))
    assert stages["q2 samples"] == ((80 + 10) * 4, 4)


def test_stated_time_estimates_match_the_estimate_tool():
    """The title cell, the configuration's CPU warning and the README quote artifacts/time_estimate.json."""
    estimate = json.loads((ARTIFACTS / "time_estimate.json").read_text())
    t4_minutes = round(estimate["profiles"]["gpu"]["t4_minutes"])
    cpu_hours = round(estimate["profiles"]["gpu"]["cpu_hours"])
    cells = nbformat.read(ROOT / "Lastname_Firstname_Asgn3.ipynb", as_version=4).cells
    assert f"about {t4_minutes} minutes on a Colab T4" in cells[0].source
    assert re.search(rf"^GPU_PROFILE_CPU_HOURS = {cpu_hours}\b", "\n".join(c.source for c in cells), re.M)
    assert f"about {t4_minutes} minutes on a Colab T4" in (ROOT / "README.md").read_text()


def test_readme_results_table_is_current():
    result = run_tool(str(TOOLS / "results_table.py"), "--check")
    assert result.returncode == 0, result.stdout + result.stderr
