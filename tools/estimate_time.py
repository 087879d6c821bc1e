"""How long a profile of the notebook takes, estimated from its FLOP count and a stated throughput.

The notebook's own networks are built at the profile's sizes on the CPU, and torch's FlopCounterMode counts
the floating-point operations of one training step (forward and backward) or one forward pass of each. The
stage list below mirrors the notebook (steps per epoch, samples, NFE, positions per sampled code grid), so the
total is the profile's compute. Time = FLOPs / sustained throughput + a fixed cost per step or sampler call.

The throughputs are assumptions, stated here and written to the output:
* T4 (Colab's free GPU) with fp16 autocast: 2 TFLOP/s sustained. Its tensor-core peak is 65 TFLOP/s, but networks
  this small (32 to 256 channels on 4x4 to 28x28 maps) keep it far from that; 2 TFLOP/s is about a quarter of its
  8 TFLOP/s fp32 peak. Plus 3 ms per training step and 1 ms per sampling step for kernel launches.
* CPU: calibrated when the committed artifacts come from a `cpu` run: the `cpu` profile's FLOPs divided by the
  seconds that run (artifacts/q*_metrics.json) spent in the same stages; that rate gives the `gpu` profile's
  expected hours on this CPU.

usage: python tools/estimate_time.py [--out artifacts/time_estimate.json]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from notebook_defs import load_definitions
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
T4_FLOPS, T4_STEP_S, T4_SAMPLER_STEP_S = 2e12, 3e-3, 1e-3


def flops(fn) -> int:
    """FLOPs counted while running fn()."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def per_image_costs(nb, config: dict) -> dict:
    """FLOPs per image (per code grid for the prior) of one training step or one forward pass of each network."""
    batch = 8
    x, labels = torch.rand(batch, 1, 28, 28), torch.arange(batch) % 10
    q1, q2 = config["q1"], config["q2"]
    ablation = nb.VQVAE({**q1["vqvae"], "hidden": q1["ablation"]["hidden"]}, "ema_restart")
    vqvae = nb.VQVAE(q1["vqvae"], "ema_restart")
    codes = vqvae.encode(x)
    prior = nb.TransformerPrior.from_config(q1["vqvae"]["codebook_size"], q1["prior"])
    sde = nb.VESDE(**q2["sde"])
    score = nb.ScoreUNet(sde.marginal_std, **q2["net"], n_classes=10)
    classifier = nb.SmallClassifier(config["classifier"]["width"])
    t = torch.rand(batch)
    costs = {
        "ablation_step": flops(lambda: ablation.loss(x)[0].backward()),
        "vqvae_step": flops(lambda: vqvae.loss(x)[0].backward()),
        "vqvae_forward": flops(lambda: vqvae(x)),
        "vqvae_encode": flops(lambda: vqvae.encode(x)),
        "prior_step": flops(lambda: nb.code_nll(prior, codes, labels).backward()),
        "prior_forward": flops(lambda: prior(codes, labels)),
        "score_step": flops(lambda: nb.dsm_loss(score, x, sde).backward()),
        "score_forward": flops(lambda: score(x, t)),
        "classifier_step": flops(lambda: F.cross_entropy(classifier(x), labels).backward()),
        "classifier_forward": flops(lambda: classifier(x)),
    }
    return {name: value / batch for name, value in costs.items()}


def stages(config: dict, cost: dict) -> dict:
    """{stage: (FLOPs, steps that pay a fixed cost)} of one run of the notebook, in the order it runs them."""
    q1, q2 = config["q1"], config["q2"]
    n_train = config["subset"] or 60000
    n_test = max(config["subset"] // 4, 64) if config["subset"] else 10000

    def training(epochs, n, batch, step_cost):
        return epochs * n * step_cost, epochs * math.ceil(n / batch)

    ablation_images = min(q1["ablation"]["n_images"] or n_train, n_train)
    vq, prior, clf = q1["vqvae"], q1["prior"], config["classifier"]
    n_q1 = 10 * q1["samples_per_class"]
    grid = q1["sampling_grid"]
    pairs = [(t, w) for t in grid["temperatures"] for w in grid["guidance"]]
    grid_passes = sum(10 * grid["per_class"] * (2 if w else 1) for _, w in pairs)   # with its cache, one grid costs
                                                                                   # about one forward pass
    table, nfe_max = q2["sampler_grid"], q2["sampler_grid"]["nfe"][-1]
    forward, n_guidance = cost["score_forward"], len(q2["conditional"]["guidance"])
    sampler_calls = lambda n, nfe: math.ceil(n / q2["sample_batch"]) * nfe   # noqa: E731 (fixed cost per call)
    return {
        "q1 ablation": tuple(3 * v for v in training(q1["ablation"]["epochs"], ablation_images, vq["batch"],
                                                     cost["ablation_step"])),
        "q1 vqvae": training(vq["epochs"], n_train, vq["batch"], cost["vqvae_step"]),
        "q1 prior": training(prior["epochs"], n_train, prior["batch"], cost["prior_step"]),
        "q1 sampling": ((2 * n_q1 + grid_passes) * cost["prior_forward"], 49 * (len(pairs) + 2)),
        "q1 classifier": training(clf["epochs"], n_train, clf["batch"], cost["classifier_step"]),
        "q1 evaluation": ((n_train + n_test) * cost["vqvae_encode"] + 2 * n_test * cost["vqvae_forward"]
                          + 2 * n_train * cost["classifier_forward"], 0),
        "q2 score network": training(q2["train"]["epochs"], n_train, q2["train"]["batch"], cost["score_step"]),
        "q2 conditional network": training(q2["conditional"]["train"]["epochs"], n_train, q2["train"]["batch"],
                                           cost["score_step"]),
        "q2 classifier": training(clf["epochs"], n_train, clf["batch"], cost["classifier_step"]),
        "q2 sampler table": ((3 * sum(table["nfe"]) + len(table["snr_sweep"]) * nfe_max) * table["n_images"] * forward,
                             3 * sum(sampler_calls(table["n_images"], nfe) for nfe in table["nfe"])
                             + len(table["snr_sweep"]) * sampler_calls(table["n_images"], nfe_max)),
        "q2 samples": ((80 + q2["n_samples"]) * nfe_max * forward, sampler_calls(q2["n_samples"], nfe_max)),
        "q2 guidance": ((n_guidance * table["n_images"] + q2["n_samples"]) * nfe_max * forward,
                        sampler_calls(n_guidance * table["n_images"] + q2["n_samples"], nfe_max) // 2),
        "q2 likelihood": (q2["likelihood"]["n_images"] * q2["likelihood"]["steps"] * 2 * cost["score_step"],
                          q2["likelihood"]["steps"] * 2 * math.ceil(q2["likelihood"]["n_images"] / 64)),
    }


def measured_seconds(metrics: dict) -> dict:
    """The committed run's seconds, grouped like `stages` (training stages as trained, caches as computed)."""
    q1, q2 = metrics["q1"]["seconds"], metrics["q2"]["seconds"]
    return {
        "q1 ablation": sum(v for k, v in q1.items() if k.startswith("ablation_")), "q1 vqvae": q1["vqvae"],
        "q1 prior": q1["prior"], "q1 sampling": q1["plain_samples"] + q1["sampling_grid"] + q1["final_samples"],
        "q1 classifier": q1["classifier"], "q2 score network": q2["score_model"],
        "q2 conditional network": q2["conditional_model"], "q2 classifier": q2["classifier"],
        "q2 sampler table": q2["sampler_table"], "q2 samples": q2["final_samples"] + q2["em_80_samples"],
        "q2 guidance": q2["guidance_sweep"] + q2["guided_samples"], "q2 likelihood": q2["likelihood"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "time_estimate.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    nb = load_definitions(DEVICE=torch.device("cpu"), AMP=None, PROGRESS=False)
    result = {"assumptions": {"t4_sustained_flops": T4_FLOPS, "t4_seconds_per_training_step": T4_STEP_S,
                              "t4_seconds_per_sampler_step": T4_SAMPLER_STEP_S}, "profiles": {}}
    for profile in ("cpu", "gpu"):
        config = nb.merged(nb.BASE, nb.OVERRIDES[profile])
        per_stage = stages(config, per_image_costs(nb, config))
        result["profiles"][profile] = {
            "tflop": {name: f / 1e12 for name, (f, _) in per_stage.items()},
            "t4_minutes": sum(f / T4_FLOPS + calls * T4_STEP_S for f, calls in per_stage.values()) / 60}
    metrics = {name: json.loads((ROOT / "artifacts" / f"{name}_metrics.json").read_text()) for name in ("q1", "q2")}
    if all(m["profile"] == "cpu" for m in metrics.values()):   # calibrate the CPU against the committed cpu run
        seconds = measured_seconds(metrics)
        cpu_flops = result["profiles"]["cpu"]["tflop"]
        rate = sum(cpu_flops[name] for name in seconds) * 1e12 / sum(seconds.values())
        result["cpu_calibration"] = {"sustained_flops": rate, "per_stage_flops": {
            name: cpu_flops[name] * 1e12 / max(seconds[name], 1e-9) for name in seconds}}
        gpu_tflop = sum(result["profiles"]["gpu"]["tflop"].values())
        result["profiles"]["gpu"]["cpu_hours"] = gpu_tflop * 1e12 / rate / 3600
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for profile, values in result["profiles"].items():
        print(f"{profile}: {sum(values['tflop'].values()):.1f} TFLOP, about {values['t4_minutes']:.0f} min on a T4"
              + (f", {values['cpu_hours']:.1f} h on this CPU" if "cpu_hours" in values else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
