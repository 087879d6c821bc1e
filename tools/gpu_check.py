"""Check the notebook's `gpu` profile on a CUDA machine and measure what a full Run-all will take there.

1. Executes the notebook's configuration cells as Colab would and checks the choices they make on this GPU:
   the profile ("gpu"), the autocast dtype (bf16 from compute capability 8, fp16 with loss scaling before it)
   and cuDNN's autotuner (on).
2. Trains each network of the `gpu` profile at its own batch for `--steps` steps on random data (after warm-up
   steps), with the notebook's ScheduledAdam and autocast: every loss must stay finite, and under fp16 the loss
   scaler must not keep skipping steps. The mean seconds per step are recorded.
3. Times every network pass the notebook's samplers and scorers run (the prior's passes over code grids, the
   score network's evaluations, plain and guided, the classifier's feature passes) at the notebook's batches:
   the mean of `--passes` calls after warm-up calls.
4. Extrapolates the full Run-all time: the calls of `estimate_time.stage_work` times these measured seconds.

Every time is taken by `torch.utils.benchmark.Timer.timeit`: max(2, calls // 100) warm-up calls, then the calls
timed as one block, the device synchronised before and after it.

Writes artifacts/gpu_check.json. Without CUDA it says so in one line and exits 0 (`--allow-cpu` runs the same
code on the CPU, for tests, and writes wherever --out says).

usage: python tools/gpu_check.py [--steps 200] [--out artifacts/gpu_check.json] [--allow-cpu --profile smoke]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch
from estimate_time import operations, stage_work
from lib.notebook_defs import configuration_source, load_definitions
from torch.utils.benchmark import Timer
from torch.utils.benchmark.utils.timer import timer as synchronised_clock

ROOT = Path(__file__).resolve().parent.parent
MAX_STEPS = 1900   # with its warm-up, below the fp16 loss scaler's growth interval of 2000 clean steps


def notebook_choices(profile: str | None) -> dict:
    """Run the notebook's imports and configuration cells as the notebook does (with ASGN3_PROFILE=`profile` when
    given); return the profile, device, precision (its name, and its autocast dtype) and cuDNN setting they chose,
    and the configuration."""
    previous = os.environ.get("ASGN3_PROFILE")
    if profile:
        os.environ["ASGN3_PROFILE"] = profile
    namespace: dict = {}
    try:
        exec(configuration_source(), namespace)
    finally:
        if previous is None:
            os.environ.pop("ASGN3_PROFILE", None)
        else:
            os.environ["ASGN3_PROFILE"] = previous
    return {"profile": namespace["PROFILE"], "device": str(namespace["DEVICE"]), "amp": namespace["PRECISION"],
            "cudnn_benchmark": torch.backends.cudnn.benchmark, "config": namespace["CFG"],
            "autocast_dtype": namespace["AMP"]}


def expected_amp(device: torch.device) -> str | None:
    """What "auto" must pick on this GPU (None on a CPU, where the test run accepts any)."""
    if device.type != "cuda":
        return None
    return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp16"


def seconds_per_call(fn, calls: int, clock=synchronised_clock) -> float:
    """Mean seconds of `calls` consecutive calls of fn(), after Timer.timeit's warm-up calls, on `clock` (by default
    the Timer's: the host's clock, read after synchronising the device)."""
    return Timer("fn()", globals={"fn": fn}, timer=clock, num_threads=torch.get_num_threads()).timeit(calls).mean


def train_for(nb, loss_of, parameters, steps: int, clip) -> dict:
    """`steps` timed steps (after warm-up steps) of the notebook's ScheduledAdam on loss_of(): whether every loss,
    warm-up included, is finite, how many fp16 steps the loss scaler skipped, and the mean seconds per timed step.

    A skipped step halves the scale, which grows again only after `get_growth_interval()` (2000) clean steps in a
    row; below that many steps (main() caps --steps) the number of halvings, log2(first scale / last scale), counts
    the skipped steps without reading the scale back at every step."""
    optimizer = nb.ScheduledAdam(parameters, 1e-3, steps, clip=clip)
    losses = []

    def step():
        loss = loss_of()
        optimizer.step(loss)
        losses.append(loss.detach())

    scaling = optimizer.scaler.is_enabled()
    first_scale = optimizer.scaler.get_scale() if scaling else None
    seconds = seconds_per_call(step, steps)
    values = torch.stack(losses).float().tolist()
    skipped = round(math.log2(first_scale / optimizer.scaler.get_scale())) if scaling else 0
    finite = all(math.isfinite(value) for value in values)
    return {"steps": steps, "seconds": seconds, "finite": finite, "first_loss": values[0], "last_loss": values[-1],
            "skipped_fp16_steps": skipped, "ok": finite and skipped <= max(2, steps // 50)}


def measure(nb, config: dict, steps: int, passes: int) -> dict:
    """{"<operation>@<batch>": measurement} for every operation and batch that stage_work(config) lists."""
    ops, result = operations(nb, config), {}
    for op, batch in sorted({(op, batch) for items in stage_work(config).values() for op, _, batch in items}):
        kind, fn, parameters = ops[op]
        if kind == "step":
            result[f"{op}@{batch}"] = train_for(nb, lambda fn=fn, b=batch: fn(b), parameters, steps,
                                                1.0 if op == "score_step" else None)
        else:
            result[f"{op}@{batch}"] = {"seconds": seconds_per_call(lambda fn=fn, b=batch: fn(b), passes)}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per network")
    parser.add_argument("--passes", type=int, default=20, help="timed calls of each sampling or scoring pass")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "gpu_check.json")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU (tests); the times mean nothing")
    parser.add_argument("--profile", help="the profile to check (default: what the notebook picks, gpu on CUDA)")
    args = parser.parse_args(argv)
    if not 0 < args.steps <= MAX_STEPS:
        parser.error(f"--steps must be between 1 and {MAX_STEPS}: the loss scaler's skipped steps are counted by its "
                     "halvings, which a longer run can undo by growing the scale")
    if not torch.cuda.is_available() and not args.allow_cpu:
        print("gpu-check: no CUDA device on this machine, nothing to check; run `make gpu-check` on a GPU machine.")
        return 0
    choices = notebook_choices(args.profile)
    device = torch.device(choices["device"])
    checks = {"profile": choices["profile"] == (args.profile or "gpu"),
              "mixed_precision": expected_amp(device) in (None, choices["amp"]),
              "cudnn_benchmark": device.type != "cuda" or choices["cudnn_benchmark"]}
    nb = load_definitions(DEVICE=device, AMP=choices["autocast_dtype"], PRECISION=choices["amp"], PROGRESS=False,
                          CFG=choices["config"])
    measured = measure(nb, choices["config"], args.steps, args.passes)
    checks["training"] = all(m["ok"] for m in measured.values() if "ok" in m)
    minutes = {stage: sum(calls * measured[f"{op}@{batch}"]["seconds"] for op, calls, batch in items) / 60
               for stage, items in stage_work(choices["config"]).items()}
    shown = {name: value for name, value in choices.items() if name not in ("config", "autocast_dtype")}
    record = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "choices": shown,
              "checks": checks, "operations": measured, "minutes_per_stage": minutes,
              "run_all_minutes": sum(minutes.values())}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"gpu-check on {record['device']} ({choices['amp']}): "
          + ", ".join(f"{name} {'ok' if ok else 'FAILED'}" for name, ok in checks.items())
          + f"; a Run-all of the {choices['profile']} profile takes about {record['run_all_minutes']:.0f} min")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
