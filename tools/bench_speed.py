"""Throughput of every training and sampling stage: the committed baseline against the settings we adopted.

For each stage it times one call (a training step, a sampler step or a classifier pass) of several variants with
`torch.utils.benchmark.Timer`: in every round, one `blocked_autorange` per variant (its own warm-up, then blocks of
calls for at least `MIN_RUN_TIME` seconds, the device synchronised around each block), the variants of a stage
taken in turn from a shifted start, so that a slow stretch of a shared machine hits all of them alike. The median
over the rounds of each round's median gives images (or code grids) per second. The first call of a variant runs
before the rounds, timed with the Timer's own synchronising clock; for `torch.compile` it is the compile time.

* baseline: the code path and networks of the notebook before the speed work: fp32, one host sync per step
  (`loss.item()`), a Python loop for the weight average (EMA), the 28x28 score network [24, 48, 96], the prior's
  loss read from [B, K, 7, 7] logits, and the VQ-VAE's nearest-code distances as three [M, K] operations.
* adopted: the notebook's own functions and `cpu` configuration, with its mixed-precision choice for this
  machine (AMP), no per-step syncs and its `weight_average` (torch's AveragedModel, a `_foreach` EMA).
* candidates that were measured but not adopted: channels-last, `torch.compile`, and bf16 autocast where this
  machine has no native bf16; for the score step also the adopted settings on the former 28x28 network.

Each training step runs at the batch its stage trains with in the notebook (VQ-VAE, prior and score network alike).

Writes artifacts/bench_speed.json (artifacts/bench_speed_cuda.json on CUDA):
{"device", "cpu", "amp", "rounds", "stages": {name: {"baseline_per_s", "adopted_per_s", "speedup", "settings",
"candidates": {name: {"per_s", "speedup_over_adopted", "compile_seconds"?}}}}}

usage: python tools/bench_speed.py [--rounds 7] [--smoke] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from lib.notebook_defs import load_definitions
from torch.utils.benchmark import Timer
from torch.utils.benchmark.utils.timer import timer as synchronised_clock

ROOT = Path(__file__).resolve().parent.parent
BASELINE_SCORE_NET = {"channels": [24, 48, 96], "embed_dim": 128, "res_blocks": [0, 1, 1], "space_to_depth": False}
MIN_RUN_TIME = 0.3   # seconds of calls per variant and round


def expanded_distance_argmin(quantizer):
    """The baseline nearest-code search: ||u||^2 - 2 u.e + ||e||^2 as three [M, K] operations, then argmin."""
    def nearest_codes(flat):
        codebook = quantizer.codebook
        return (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.t() + codebook.pow(2).sum(1)).argmin(1)
    return nearest_codes


def loop_ema_update(averaged: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """The baseline EMA: one lerp_ per parameter tensor, in Python."""
    with torch.no_grad():
        for a, p in zip(averaged.parameters(), model.parameters()):
            a.lerp_(p, 1 - decay)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


class Stage:
    """One benchmarked operation: `make(variant)` -> (callable doing one step, items per call)."""

    def __init__(self, name: str, make, variants: dict):
        self.name, self.make, self.variants = name, make, variants


def build_stages(nb, config: dict, device: torch.device, smoke: bool) -> list:
    """The stages of the notebook, each with its variants: baseline, adopted and candidates."""
    q1, q2 = config["q1"], config["q2"]

    def training_batch(stage_config: dict) -> int:
        """The batch a stage trains with in the notebook (8 in smoke mode)."""
        return 8 if smoke else stage_config["batch"]

    def average(averaged, model: torch.nn.Module, decay: float, variant: dict) -> None:
        """The weight average's update: the baseline's Python loop, or the notebook's AveragedModel."""
        if variant.get("loop_ema"):
            loop_ema_update(averaged.module, model, decay)
        else:
            averaged.update_parameters(model)

    x = torch.rand(training_batch(q1["vqvae"]), 1, 28, 28, device=device)
    codes = torch.randint(q1["vqvae"]["codebook_size"], (training_batch(q1["prior"]), 7, 7), device=device)
    code_labels = torch.arange(len(codes), device=device) % 10
    score_x = torch.rand(training_batch(q2["train"]), 1, 28, 28, device=device)
    sde = nb.VESDE(**q2["sde"])
    adopted_net = q2["net"]

    def variant_model(module: torch.nn.Module, variant: dict) -> torch.nn.Module:
        module = module.to(device)
        if variant.get("channels_last"):
            module = module.to(memory_format=torch.channels_last)
        return torch.compile(module) if variant.get("compile") else module

    def inputs(variant: dict, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.contiguous(memory_format=torch.channels_last) if variant.get("channels_last") else tensor

    def vqvae_step(variant):
        torch.manual_seed(0)
        model = nb.VQVAE(q1["vqvae"], "ema_restart").to(device)
        if variant.get("channels_last") or variant.get("compile"):
            model.encoder, model.decoder = (variant_model(m, variant) for m in (model.encoder, model.decoder))
        if variant.get("expanded_distance"):
            model.quantizer.nearest_codes = expanded_distance_argmin(model.quantizer)
        optimizer = nb.ScheduledAdam(model.parameters(), 1e-3, 1000)
        images = inputs(variant, x)

        def step():
            total, parts = model.loss(images)
            optimizer.step(total)
            if variant.get("sync_each_step"):
                [value.item() for value in parts.values()]
        return step, len(x)

    def prior_step(variant):
        torch.manual_seed(0)
        prior = variant_model(nb.GatedPixelCNN.from_config(q1["vqvae"]["codebook_size"], q1["prior"]), variant)
        optimizer = nb.ScheduledAdam(prior.parameters(), 1e-3, 1000)

        def step():
            with nb.autocast():
                if variant.get("grid_loss"):      # the loss read from the [B, K, 7, 7] view of the logits
                    loss = F.cross_entropy(prior(codes, code_labels).float(), codes)
                else:
                    loss = nb.code_nll(prior, codes, code_labels)
            optimizer.step(loss)
            if variant.get("sync_each_step"):
                loss.item()
        return step, len(codes)

    def score_step(variant):
        torch.manual_seed(0)
        net = nb.ScoreNet(sde.marginal_std, **variant.get("net", adopted_net)).to(device)
        averaged, sigma_data = nb.weight_average(net, q2["train"]["ema_decay"]), net.sigma_data
        net = variant_model(net, variant)
        optimizer = nb.ScheduledAdam(net.parameters(), 1e-3, 1000, clip=1.0)
        images = inputs(variant, score_x)

        def step():
            loss = nb.dsm_loss(net, images, sde, q2["train"], sigma_data)
            optimizer.step(loss)
            average(averaged, net, q2["train"]["ema_decay"], variant)
            if variant.get("sync_each_step"):
                loss.item()
        return step, len(score_x)

    def sampler_step(guided: bool):
        def make(variant):
            torch.manual_seed(0)
            n = 8 if smoke else q2["sample_batch"]
            net_config = variant.get("net", adopted_net)
            net = variant_model(nb.ScoreNet(sde.marginal_std, **net_config, n_classes=10), variant)
            net.eval()
            y = torch.arange(n, device=device) % 10
            score_fn = nb.score_function(net, y, 1.0) if guided else nb.score_function(net)
            state = inputs(variant, torch.randn(n, 1, 28, 28, device=device))
            t = torch.tensor(0.5, device=device)

            @torch.no_grad()
            def step():
                score_fn(state, t)
            return step, n
        return make

    def classifier_pass(variant):
        torch.manual_seed(0)
        model = variant_model(nb.SmallClassifier(config["classifier"]["width"]), variant).eval()
        images = inputs(variant, torch.rand(8 if smoke else 1000, 1, 28, 28, device=device))

        @torch.no_grad()
        def step():
            model.features(images) if not variant.get("compile") else model(images)
        return step, len(images)

    baseline_sync = {"sync_each_step": True}
    candidates = {} if smoke else {"channels_last": {"channels_last": True}, "compile": {"compile": True},
                                   "bf16_autocast": {"amp": "bf16"}}
    old_net = {"net": BASELINE_SCORE_NET}
    return [
        Stage("vqvae_train_step", vqvae_step, {"baseline": {**baseline_sync, "expanded_distance": True},
                                               "adopted": {}, **candidates}),
        Stage("prior_train_step", prior_step, {"baseline": {**baseline_sync, "grid_loss": True},
                                               "adopted": {}, **candidates}),
        Stage("score_train_step", score_step, {"baseline": {**baseline_sync, "loop_ema": True, **old_net},
                                               "adopted": {}, "adopted_settings_old_network": old_net,
                                               **candidates}),
        Stage("sampler_step_unguided", sampler_step(False), {"baseline": old_net, "adopted": {}, **candidates}),
        Stage("sampler_step_guided", sampler_step(True), {"baseline": old_net, "adopted": {}, **candidates}),
        # the notebook computes the FID features in fp32 (no autocast in SmallClassifier), so bf16 is no candidate here
        Stage("classifier_feature_pass", classifier_pass, {"baseline": {}, "adopted": {}, **{
            name: variant for name, variant in candidates.items() if "amp" not in variant}}),
    ]


def first_call_seconds(step, clock) -> float:
    """Seconds of one call of `step` on `clock` (for the first call of a compiled variant: the compilation)."""
    began = clock()
    step()
    return clock() - began


def run(nb, stages: list, adopted_amp, rounds: int, min_run_time: float = MIN_RUN_TIME,
        clock=synchronised_clock) -> dict:
    """Per stage and variant: per-second throughput (median over `rounds` interleaved rounds of the median call time
    of a `Timer.blocked_autorange` of at least `min_run_time` seconds) and the compile time, both on `clock` (by
    default the Timer's: the host's clock, read after synchronising the device).

    Each round starts a stage's variants at another offset, so that no fixed position in the round favours one."""
    amp_of = {"baseline": None, "bf16_autocast": torch.bfloat16}
    built, compile_seconds = {}, {}
    for stage in stages:
        for name, variant in stage.variants.items():
            nb.AMP = amp_of.get(name, adopted_amp)
            step, items = stage.make(variant)
            first = first_call_seconds(step, clock)
            if variant.get("compile"):
                compile_seconds[stage.name, name] = first
            timer = Timer("step()", globals={"step": step}, timer=clock, num_threads=torch.get_num_threads(),
                          label=stage.name, sub_label=name)
            built[stage.name, name] = (timer, items, nb.AMP)
    medians = {key: [] for key in built}
    for round_index in range(rounds):
        for stage in stages:
            names = list(stage.variants)
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                timer, _, amp = built[stage.name, name]
                nb.AMP = amp
                medians[stage.name, name].append(timer.blocked_autorange(min_run_time=min_run_time).median)
    result = {}
    for stage in stages:
        per_s = {name: built[stage.name, name][1] / statistics.median(medians[stage.name, name])
                 for name in stage.variants}
        result[stage.name] = {
            "baseline_per_s": per_s["baseline"], "adopted_per_s": per_s["adopted"],
            "speedup": per_s["adopted"] / per_s["baseline"],
            "candidates": {name: {"per_s": value, "speedup_over_adopted": value / per_s["adopted"],
                                  **({"compile_seconds": compile_seconds[stage.name, name]}
                                     if (stage.name, name) in compile_seconds else {})}
                           for name, value in per_s.items() if name not in ("baseline", "adopted")}}
    return result


SETTINGS = {
    "vqvae_train_step": "the notebook's VQ-VAE; baseline: the nearest-code distances as three [M, K] operations "
                        "and one host sync per step; adopted: one fused addmm, logged values read back once per epoch",
    "prior_train_step": "the notebook's prior and its weight average; baseline: cross-entropy on the [B, K, 7, 7] "
                        "view of the logits, loop EMA, one host sync per step; adopted: on [B * 49, K] logits "
                        "(code_nll), the notebook's weight_average, no per-step sync",
    "score_train_step": "baseline: the 28x28 U-Net [24, 48, 96], loop EMA, one sync per step; adopted: the "
                        "space-to-depth U-Net of the configuration (levels 14, 7, 4), the notebook's weight_average, "
                        "no per-step sync",
    "sampler_step_unguided": "one score evaluation of a sampler batch; baseline: the 28x28 U-Net; adopted: the "
                             "space-to-depth U-Net",
    "sampler_step_guided": "the same with classifier-free guidance (a doubled batch)",
    "classifier_feature_pass": "1000 images through the FID classifier; nothing adopted",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 7; 1 with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="tiny batches, no candidates, one round unless "
                                                                 "--rounds says otherwise (for CI)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(2)
    nb = load_definitions(DEVICE=device, AMP=None, PROGRESS=False, CHECKPOINTS=ROOT / "checkpoints")
    config = nb.merged(nb.BASE, nb.OVERRIDES["smoke" if args.smoke else ("gpu" if device.type == "cuda" else "cpu")])
    adopted_amp = nb.autocast_dtype(device, config["mixed_precision"])
    rounds = args.rounds or (1 if args.smoke else 7)
    results = run(nb, build_stages(nb, config, device, args.smoke), adopted_amp, rounds)
    for name, row in results.items():
        row["settings"] = SETTINGS[name]
    out = args.out or ROOT / "artifacts" / ("bench_speed_cuda.json" if device.type == "cuda" else "bench_speed.json")
    record = {"device": str(device), "cpu": cpu_name(), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "amp": str(adopted_amp), "rounds": rounds, "stages": results}
    out.write_text(json.dumps(record, indent=2) + "\n")
    for name, row in results.items():
        print(f"{name:<24} baseline {row['baseline_per_s']:9.1f}/s  adopted {row['adopted_per_s']:9.1f}/s  "
              f"x{row['speedup']:.2f}  " + "  ".join(f"{c} x{v['speedup_over_adopted']:.2f}"
                                                   for c, v in row["candidates"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
