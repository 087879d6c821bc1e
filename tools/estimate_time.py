"""How long a profile of the notebook takes, estimated from its FLOP count and stated GPU throughputs.

The notebook's own networks are built at the profile's sizes on the CPU, and torch's FlopCounterMode counts the
floating-point operations of one training step (forward and backward) or one forward pass of each, per image.
`stage_work` lists what every stage of the notebook runs: how many calls of which operation at which batch (the
training steps of each network; the network passes of each sampler, 49 per code grid for the prior, one per score
evaluation; the classifier's feature passes). The same list drives `tools/gpu_check.py`, which times the
operations on a real GPU instead of assuming a rate.

Time on a GPU = FLOPs / sustained rate + a fixed cost per call. The assumptions, written to the output:
* Sustained rates for networks this small (8 to 256 channels on 4x4 to 28x28 maps, batches of 64 to 1000), far
  below the chips' peaks: T4 (fp16 autocast) 2 TFLOP/s, a quarter of its fp32 peak; L4 (bf16) 4 TFLOP/s; A100
  (bf16) 8 TFLOP/s. `make gpu-check` on a real GPU measures what these guesses stand in for.
* 3 ms per training step (kernel launches of forward, backward and Adam, the loss scaler's check, the clipping),
  1 ms per network pass while sampling: both set by the host, so the same on every GPU.
The CPU time of the `gpu` profile is its FLOPs at the rate the committed `cpu` run reached (its FLOPs divided by
its seconds), when the committed artifacts come from a `cpu` run.

usage: python tools/estimate_time.py [--out artifacts/time_estimate.json]
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from lib.notebook_defs import load_definitions
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
GPU_RATES = {"T4": 2e12, "L4": 4e12, "A100": 8e12}          # sustained FLOP/s assumed for these small networks
SECONDS_PER_CALL = {"step": 3e-3, "pass": 1e-3}             # host-side cost of one training step / network pass


def flops(fn) -> int:
    """FLOPs counted while running fn()."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def networks(nb, config: dict) -> dict:
    """The notebook's networks at the sizes of `config`, on the notebook's DEVICE."""
    q1, q2 = config["q1"], config["q2"]
    sde = nb.VESDE(**q2["sde"])
    nets = {"ablation": nb.VQVAE({**q1["vqvae"], "hidden": q1["ablation"]["hidden"]}, "ema_restart"),
            "vqvae": nb.VQVAE(q1["vqvae"], "ema_restart"),
            "prior": nb.GatedPixelCNN.from_config(q1["vqvae"]["codebook_size"], q1["prior"]),
            "score": nb.ScoreNet(sde.marginal_std, **q2["net"], n_classes=10), "sde": sde,
            "classifier": nb.SmallClassifier(config["classifier"]["width"])}
    return {name: net.to(nb.DEVICE) if isinstance(net, torch.nn.Module) else net for name, net in nets.items()}


def operations(nb, config: dict) -> dict:
    """{operation: (kind, fn, parameters)} for every operation the notebook runs, on random inputs at the sizes
    of `config`. kind "step": fn(batch) returns the loss of one training batch, computed as the notebook's
    training functions compute it (autocast included), and `parameters` are what it trains; kind "pass":
    fn(batch) runs one pass of sampling or scoring (parameters None)."""
    nets, q2 = networks(nb, config), config["q2"]
    sde, score, prior = nets["sde"], nets["score"], nets["prior"]
    frozen = copy.deepcopy(score).requires_grad_(False)

    def images(batch):
        return torch.rand(batch, 1, 28, 28, device=nb.DEVICE)

    def codes(batch):
        return torch.randint(config["q1"]["vqvae"]["codebook_size"], (batch, 7, 7), device=nb.DEVICE)

    def labels(batch):
        return torch.arange(batch, device=nb.DEVICE) % 10

    def prior_loss(batch):
        with nb.autocast():
            return nb.code_nll(prior, codes(batch), labels(batch))

    @torch.no_grad()
    def prior_pass(batch):
        with nb.autocast():
            prior(codes(batch), labels(batch))

    @torch.no_grad()
    def score_pass(batch):
        nb.score_function(score)(images(batch), torch.rand(batch, device=nb.DEVICE))

    def score_vjp(batch):                     # one likelihood evaluation: the drift and its vector-Jacobian product
        x = images(batch).requires_grad_(True)
        frozen(x, torch.rand(batch, device=nb.DEVICE)).sum().backward()

    return {
        "ablation_step": ("step", lambda b: nets["ablation"].loss(images(b))[0], nets["ablation"].parameters()),
        "ablation_forward": ("pass", torch.no_grad()(lambda b: nets["ablation"](images(b))), None),
        "vqvae_step": ("step", lambda b: nets["vqvae"].loss(images(b))[0], nets["vqvae"].parameters()),
        "vqvae_forward": ("pass", torch.no_grad()(lambda b: nets["vqvae"](images(b))), None),
        "vqvae_encode": ("pass", lambda b: nets["vqvae"].encode(images(b)), None),
        "prior_step": ("step", prior_loss, prior.parameters()),
        "prior_pass": ("pass", prior_pass, None),
        "score_step": ("step", lambda b: nb.dsm_loss(score, images(b), sde, q2["train"], score.sigma_data),
                       score.parameters()),
        "score_pass": ("pass", score_pass, None),
        "score_vjp": ("pass", score_vjp, None),
        "classifier_step": ("step", lambda b: F.cross_entropy(nets["classifier"](images(b)), labels(b)),
                            nets["classifier"].parameters()),
        "classifier_pass": ("pass", torch.no_grad()(lambda b: nets["classifier"].features(images(b))), None),
    }


def stage_work(config: dict) -> dict:
    """{stage: [(operation, calls, batch)]}: what each stage of the notebook runs, in the order it runs them."""
    q1, q2, clf = config["q1"], config["q2"], config["classifier"]
    n_train = config["subset"] or 60000
    n_test = max(config["subset"] // 4, 64) if config["subset"] else 10000

    def steps(epochs, n, batch):
        return epochs * math.ceil(n / batch)

    def sampling(op, n, batch, passes, doubled=False):
        """(op, calls, batch) of drawing n images `batch` at a time with `passes` network passes each; a guided
        pass runs the doubled batch."""
        return op, math.ceil(n / batch) * passes, (2 if doubled else 1) * min(n, batch)

    def scoring(n_images):
        """The classifier's feature passes over n_images, 1000 at a time."""
        return "classifier_pass", math.ceil(n_images / 1000), 1000

    vq, prior, ablation = q1["vqvae"], q1["prior"], q1["ablation"]
    ablation_images = min(ablation["n_images"] or n_train, n_train)
    q1_settings, completion = q1["sampling_settings"], q1["completion"]
    n_q1, n_grid = 10 * q1["samples_per_class"], 10 * q1_settings["per_class"]
    settings, batch = q2["samplers"], q2["sample_batch"]
    n_table, nfe_top, n_samples = settings["n_images"], settings["nfe"][-1], q2["n_samples"]
    # every sampler at every budget on the geometric grid, each again on the rho grid at the top budget, PC at the
    # other snr
    table_runs = [nfe for nfe in settings["nfe"] for _ in range(3)] + [nfe_top] * (3 + len(settings["snr_sweep"]))
    guidance = q2["conditional"]["guidance"]
    likelihood = q2["likelihood"]
    return {
        "q1 ablation": [("ablation_step", 3 * steps(ablation["epochs"], ablation_images, vq["batch"]), vq["batch"]),
                        ("ablation_forward", 3 * math.ceil(n_test / vq["batch"]), vq["batch"])],
        "q1 vqvae": [("vqvae_step", steps(vq["epochs"], n_train, vq["batch"]), vq["batch"]),
                     ("vqvae_forward", math.ceil(n_test / vq["batch"]), vq["batch"]),              # test metrics
                     ("vqvae_encode", math.ceil(n_train / 64) + math.ceil(n_test / 64), 64),      # the prior's codes
                     ("vqvae_forward", math.ceil(n_q1 / 64), 64)],                                # reconstructions
        "q1 prior": [("prior_step", steps(prior["epochs"], n_train, prior["batch"]), prior["batch"]),
                     ("prior_pass", math.ceil(n_test / 1000) + math.ceil(min(n_train, 10000) / 1000), 1000)],
        "q1 sampling": [sampling("prior_pass", n_q1, 500, 49), sampling("prior_pass", n_q1, 500, 49, True)]
                       + [sampling("prior_pass", n_grid, 500, 49, bool(w)) for _ in q1_settings["temperatures"]
                          for w in q1_settings["guidance"]]
                       + [sampling("prior_pass", 10, 500, 49 - 7 * completion["kept_rows"])     # one image per class
                          for _ in range(completion["samples"])],
        "q1 classifier": [("classifier_step", steps(clf["epochs"], n_train, clf["batch"]), clf["batch"]),
                          scoring(n_test + 10000 + 5 * n_q1 + len(q1_settings["temperatures"])
                                  * len(q1_settings["guidance"]) * n_grid + n_grid)],
        "q2 score network": [("score_step", steps(q2["train"]["epochs"], n_train, q2["train"]["batch"]),
                              q2["train"]["batch"])],
        "q2 conditional network": [("score_step", steps(q2["conditional"]["train"]["epochs"], n_train,
                                                        q2["train"]["batch"]), q2["train"]["batch"])],
        "q2 classifier": [("classifier_step", steps(clf["epochs"], n_train, clf["batch"]), clf["batch"]),
                          scoring(n_test + (len(table_runs) + 1 + len(guidance)) * n_table + 3 * n_samples)],
        "q2 sampler table": [sampling("score_pass", n_table, batch, nfe) for nfe in table_runs],
        # 12 noise levels of 200 images against the exact score; the denoised estimate along an EM path (1 pass a
        # step) and an ODE path (3) of nfe_top / 2 steps
        "q2 ranking": [("score_pass", 12, 200), ("score_pass", 4 * (nfe_top // 2), 64)],
        "q2 samples": [("score_pass", nfe_top, 80), sampling("score_pass", n_samples, batch, nfe_top)],
        "q2 likelihood": [("score_vjp", math.ceil(likelihood["n_images"] / 64) * likelihood["steps"] * 2,
                           min(64, likelihood["n_images"]))],
        "q2 guidance": [sampling("score_pass", n, batch, nfe_top // 2 if w else nfe_top, bool(w))
                        for w, n in [*((w, n_table) for w in guidance), (1.0, n_samples)]],
    }


def flops_per_image(nb, config: dict) -> dict:
    """FLOPs per image (per code grid for the prior) of one call of every operation (a step: its loss's forward
    and backward pass)."""
    def one_call(kind, fn, batch):
        return lambda: fn(batch).backward() if kind == "step" else fn(batch)

    return {name: flops(one_call(kind, fn, 8)) / 8 for name, (kind, fn, _) in operations(nb, config).items()}


def estimate(work: dict, per_image: dict, kinds: dict, rate: float) -> dict:
    """Minutes per stage at `rate` FLOP/s plus the fixed cost per call."""
    return {stage: sum(calls * (size * per_image[op] / rate + SECONDS_PER_CALL[kinds[op]])
                       for op, calls, size in items) / 60 for stage, items in work.items()}


def measured_seconds(metrics: dict) -> float:
    """Seconds of computation of the committed run (both questions; loaded stages count what they took)."""
    return metrics["q1"]["seconds"]["total"] + metrics["q2"]["seconds"]["total"]


def measured_precision(metrics: dict) -> str:
    """The precision setting(s) the committed run's stages were computed under, e.g. "bf16", or "bf16+fp32" when
    some stages were computed (and loaded) from another execution."""
    used = {part for run in metrics.values() for value in run["seconds"]["precision"].values()
            for part in value.split("+")}
    return "+".join(sorted(used))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "time_estimate.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    nb = load_definitions(DEVICE=torch.device("cpu"), AMP=None, PROGRESS=False)
    result = {"assumptions": {"sustained_flops": GPU_RATES, "seconds_per_call": SECONDS_PER_CALL}, "profiles": {}}
    for profile in ("cpu", "gpu"):
        config = nb.merged(nb.BASE, nb.OVERRIDES[profile])
        kinds = {name: kind for name, (kind, _, _) in operations(nb, config).items()}
        per_image, work = flops_per_image(nb, config), stage_work(config)
        tflop = {stage: sum(calls * size * per_image[op] for op, calls, size in items) / 1e12
                 for stage, items in work.items()}
        minutes = {gpu: estimate(work, per_image, kinds, rate) for gpu, rate in GPU_RATES.items()}
        result["profiles"][profile] = {"tflop": tflop, "total_tflop": sum(tflop.values()),
                                       "minutes": {gpu: sum(m.values()) for gpu, m in minutes.items()},
                                       "minutes_per_stage": minutes}
    metrics = {name: json.loads((ROOT / "artifacts" / f"{name}_metrics.json").read_text()) for name in ("q1", "q2")}
    if all(m["profile"] == "cpu" for m in metrics.values()):   # calibrate the CPU against the committed cpu run
        seconds = measured_seconds(metrics)
        rate = result["profiles"]["cpu"]["total_tflop"] * 1e12 / seconds
        result["cpu_calibration"] = {"sustained_flops": rate, "seconds": seconds,
                                     "precision": measured_precision(metrics)}
        result["profiles"]["gpu"]["cpu_hours"] = result["profiles"]["gpu"]["total_tflop"] * 1e12 / rate / 3600
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for profile, values in result["profiles"].items():
        print(f"{profile}: {values['total_tflop']:.1f} TFLOP; " + ", ".join(
            f"{gpu} {m:.0f} min" for gpu, m in values["minutes"].items())
            + (f"; {values['cpu_hours']:.1f} h on this CPU" if "cpu_hours" in values else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
