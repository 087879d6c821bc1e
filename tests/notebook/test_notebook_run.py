"""The notebook end to end (smoke profile), its configuration, and the conventions its text follows."""
import json
import re
import sys
import warnings

import nbformat
import numpy as np
import pytest
import torch
from conftest import figure_findings
from lib.notebook_defs import NOTEBOOK, configuration_source

PROCESS_WORDS = ("issue", "floor", "bench", "quality target", "previous execution", "earlier version", "previous run",
                 "development", "bit for bit", "bit-for-bit", "we tried", "make bench", "sweep we", "earlier today")


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code" and cell.source.strip()]


def markdown_sources(notebook):
    return [cell.source for cell in notebook.cells if cell.cell_type == "markdown"]


def rendered_markdown(notebook):
    """The Markdown that code cells displayed (the text built from the run's numbers)."""
    return ["".join(output["data"]["text/markdown"]) for cell in code_cells(notebook) for output in cell.outputs
            if "text/markdown" in output.get("data", {})]


def test_only_question_headings_are_top_level():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    headings = [line for source in markdown_sources(notebook) for line in source.splitlines() if line.startswith("# ")]
    assert [h.split(":")[0] for h in headings] == ["# Question 1", "# Question 2"]


def test_notebook_never_reads_the_shared_folder():
    text = NOTEBOOK.read_text()
    assert "../shared" not in text and "shared/data" not in text


def folded(cell) -> bool:
    """True when `cell` opens folded both on Colab (a #@title line and cellView "form") and in JupyterLab or
    Notebook 7 (jupyter.source_hidden), with a title that says what it holds."""
    title = cell.source.splitlines()[0] if cell.source else ""
    return (title.startswith("#@title ") and len(title) > 15 and cell.metadata.get("cellView") == "form"
            and cell.metadata.get("jupyter", {}).get("source_hidden") is True)


def test_set_up_and_rendering_cells_open_folded_with_a_title():
    """What a reader should not have to scroll past opens folded where people open the notebook: every set-up cell
    before Question 1, every plumbing cell (print-skip) and every cell whose job is to render text or a figure
    (print-output-only). The cells of the answers' code stay open."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    first_question = next(i for i, cell in enumerate(notebook.cells) if cell.source.startswith("# Question 1"))
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        tags = set(cell.metadata.get("tags", []))
        should_fold = index < first_question or tags & {"print-skip", "print-output-only"}
        assert folded(cell) == bool(should_fold), f"cell {index}: {cell.source[:80]!r}"
    assert notebook.metadata["kernelspec"]["name"] == "python3" and notebook.metadata["accelerator"] == "GPU"


def test_no_figure_or_text_cell_defines_a_name_that_another_cell_needs():
    """A cell that renders a figure or text (print-output-only) may be folded away or left out of the PDF: the
    names it assigns at top level must not be read by any later cell."""
    import ast

    cells = code_cells(nbformat.read(NOTEBOOK, as_version=4))
    for index, cell in enumerate(cells):
        if "print-output-only" not in cell.metadata.get("tags", []):
            continue
        defined = {node.id for node in ast.walk(ast.parse(cell.source)) if isinstance(node, ast.Name)
                   and isinstance(node.ctx, ast.Store)}
        defined |= {node.name for node in ast.parse(cell.source).body if isinstance(node, ast.FunctionDef)}
        for later in cells[index + 1:]:
            tree = ast.parse(later.source)
            names = [node for node in ast.walk(tree) if isinstance(node, ast.Name)]
            assigned = {node.id for node in names if isinstance(node.ctx, ast.Store)}
            assigned |= {node.arg for node in ast.walk(tree) if isinstance(node, ast.arg)}   # parameters
            read = {node.id for node in names if isinstance(node.ctx, ast.Load)}
            needed = (read - assigned) & defined
            assert not needed, f"{sorted(needed)} defined in the figure/text cell {cell.source.splitlines()[0]!r}"


def test_the_receptive_field_is_shown_next_to_the_prior_before_it_is_trained():
    sources = [cell.source for cell in nbformat.read(NOTEBOOK, as_version=4).cells]
    model = next(i for i, source in enumerate(sources) if source.startswith("class GatedPixelCNN"))
    figure = next(i for i, source in enumerate(sources) if "receptive field" in source and source.startswith("#@title"))
    training = next(i for i, source in enumerate(sources) if "= train_prior(" in source)
    assert model < figure < training


def test_long_cells_only_define():
    """A cell that runs something stays under about 40 lines; longer cells hold only definitions (a class, its
    helpers), so that every run cell is short and reads as the step it performs."""
    import ast

    from lib.notebook_defs import definitions

    too_long = [cell.source.splitlines()[0] for cell in code_cells(nbformat.read(NOTEBOOK, as_version=4))
                if len(cell.source.splitlines()) > 45
                and len(definitions(cell.source)) < len(ast.parse(cell.source).body)]
    assert not too_long, f"split these cells into a define cell and a run cell: {too_long}"


def test_static_text_speaks_only_of_the_method():
    """Markdown cells hold ideas, equations and choices, never the words of our own process or history."""
    for source in markdown_sources(nbformat.read(NOTEBOOK, as_version=4)):
        lowered = source.lower()
        found = [word for word in PROCESS_WORDS if re.search(rf"\b{re.escape(word)}", lowered)]
        assert not found, f"{found} in: {source[:120]}"


def measured_values(metrics, path=""):
    """Every float in a metrics dict that is a measurement (not configuration), with its key path."""
    if isinstance(metrics, dict):
        for key, value in metrics.items():
            if key not in ("config", "classifier", "profile", "device"):
                yield from measured_values(value, f"{path}.{key}")
    elif isinstance(metrics, list):
        for i, value in enumerate(metrics):
            yield from measured_values(value, f"{path}[{i}]")
    elif isinstance(metrics, float):
        yield path, metrics


@pytest.mark.parametrize("name", ["q1", "q2"])
def test_static_text_types_no_measured_number(name):
    """No number printed in a Markdown cell equals a measured value of the committed run (as it would be rounded)."""
    metrics = json.loads((NOTEBOOK.parent / "artifacts" / f"{name}_metrics.json").read_text())
    text = "\n".join(markdown_sources(nbformat.read(NOTEBOOK, as_version=4)))
    sections = set(re.findall(r"^## (\d\.\d+)", text, flags=re.M))          # "see 1.8" names a section
    numbers = set(re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])", text)) - sections
    for path, value in measured_values(metrics):
        for decimals in (1, 2, 3, 4, 5):
            written = f"{value:.{decimals}f}"
            if len(written.replace(".", "").lstrip("0")) < 3:
                continue                # 0.6, 0.99, 0.003: too few digits to tell a measurement from a setting
            assert written not in numbers, \
                f"Markdown types {written}, the measured {path}: render it from the metrics instead"


def assert_clean_execution(path):
    """Every code cell ran, in order, without an error; figures everywhere; no progress bar, warning or
    engineering message (checkpoint files, stage names) in any output."""
    cells = code_cells(nbformat.read(path, as_version=4))
    counts = [cell.execution_count for cell in cells]
    assert None not in counts and counts == sorted(counts)
    errors = [output for cell in cells for output in cell.outputs if output.output_type == "error"]
    assert not errors, errors[0]["evalue"] if errors else ""
    images = sum("image/png" in output.get("data", {}) for cell in cells for output in cell.outputs)
    assert images >= 15, "every part should show its figure"
    streams = "".join(output.get("text", "") for cell in cells for output in cell.outputs
                      if output.output_type == "stream")
    for unwanted in ("it/s", "Warning", "warn", ".pt", "checkpoint", "loaded"):
        assert unwanted not in streams, f"{unwanted!r} in the printed output: {streams[:300]}"
    figures = figure_findings(path.with_suffix(".figures.jsonl"))
    assert len(figures) >= images - 1, "every figure was measured at print size"
    problems = [f"{record['figure']}: {problem}" for record in figures for problem in record["problems"]]
    assert not problems, "\n".join(problems)


def test_smoke_run_has_no_errors_and_counts_in_order(smoke_notebook):
    assert_clean_execution(smoke_notebook)


def load_artifacts(smoke_notebook, name, samples):
    folder = smoke_notebook.parent / "runs" / "smoke" / "seed0"
    return json.loads((folder / f"{name}_metrics.json").read_text()), np.load(folder / f"{samples}.npy")


def assert_images(samples, n):
    assert samples.dtype == np.uint8 and samples.shape == (n, 28, 28)
    assert samples.max() > 100 and samples.std() > 5, "samples should not be blank"


def test_question1_artifacts(smoke_notebook):
    metrics, samples = load_artifacts(smoke_notebook, "q1", "q1_samples")
    assert_images(samples, 20)                                            # the smoke profile: 2 per class
    assert metrics["profile"] == "smoke" and metrics["device"] == "cpu" and metrics["seed"] == 0
    assert metrics["precision_of_this_execution"] in ("fp32", "bf16")
    assert set(metrics["seconds"]["precision"].values()) == {metrics["precision_of_this_execution"]}
    assert 0 < metrics["recon_mse"] < 1 and metrics["psnr_db"] == pytest.approx(-10 * np.log10(metrics["recon_mse"]))
    assert 1 <= metrics["perplexity"] <= metrics["codes_used"] <= metrics["codebook_size"]
    assert set(metrics["ablation"]["variants"]) == {"plain", "ema", "ema_restart"}
    assert metrics["config"]["quantizer"] in metrics["ablation"]["variants"]
    assert metrics["prior"]["nll_bits_per_image"] == pytest.approx(metrics["prior"]["nll_bits_per_code"] * 49, rel=1e-6)
    for name in ("real_train_images", "test_reconstructions", "plain_samples", "uniform_code_samples", "final_samples"):
        report = metrics["quality"][name]
        assert report["fid"] >= 0 and 0 < report["mean_confidence"] <= 1
        assert sum(report["class_histogram"]) == report["n"]
    assert set(metrics["seconds"]["stages"]) == {"train_vqvae", "encode_all", "train_prior", "prior_samples",
                                                 "train_classifier"}
    assert metrics["seconds"]["computed_in_this_execution"] and metrics["seconds"]["this_execution"] > 0
    pairs = [(row["temperature"], row["guidance"]) for row in metrics["sampling"]["settings"]]
    assert pairs == [(1.0, 0.0), (1.0, 1.0), (0.7, 0.0), (0.7, 1.0)]            # the smoke profile's grid
    assert (metrics["sampling"]["temperature"], metrics["sampling"]["guidance"]) in pairs


def test_question2_artifacts(smoke_notebook):
    metrics, samples = load_artifacts(smoke_notebook, "q2", "q2_samples")
    assert_images(samples, 20)                                            # the smoke profile's n_samples
    _, guided = load_artifacts(smoke_notebook, "q2", "q2_guided_samples")
    assert_images(guided, 20)
    assert metrics["final_sampler"]["sampler"] in ("em", "pc")
    assert {row["sampler"] for row in metrics["sampler_table"]} == {"em", "pc", "ode"}
    assert [(row["sampler"], row["nfe"], row["rho"]) for row in metrics["sampler_table"]] == [
        ("em", 4, None), ("em", 8, None), ("pc", 4, None), ("pc", 8, None), ("ode", 4, None), ("ode", 8, None),
        ("em", 8, 7.0), ("pc", 8, 7.0), ("ode", 8, 7.0), ("pc", 8, None)]                    # the smoke table
    assert len(metrics["ranking"]["relative_score_error"]) == len(metrics["ranking"]["noise_levels"])
    assert [row["guidance"] for row in metrics["conditional"]["guidance_table"]] == [0.0, 1.0]
    assert metrics["conditional"]["guidance"] in (0.0, 1.0)
    assert np.isfinite(metrics["bits_per_dim"]) and metrics["bits_per_dim_standard_error"] >= 0
    assert metrics["likelihood"]["n_images"] == 4
    assert sum(metrics["samples_quality"]["class_histogram"]) == 20
    assert 0 <= metrics["conditional"]["samples_quality"]["accuracy_vs_intended_class"] <= 1
    assert set(metrics["seconds"]["stages"]) == {"train_score_model", "train_classifier", "sample_images",
                                                 "test_set_bits_per_dim"}


def test_discussions_show_this_runs_numbers(smoke_notebook):
    """The rendered discussions quote the smoke run's own metrics, formatted as the notebook formats them."""
    rendered = "\n".join(rendered_markdown(nbformat.read(smoke_notebook, as_version=4))).replace("**", "")
    q1, _ = load_artifacts(smoke_notebook, "q1", "q1_samples")
    q2, _ = load_artifacts(smoke_notebook, "q2", "q2_samples")
    for quoted in (f"{q1['recon_mse']:.5f}", f"FID {q1['quality']['final_samples']['fid']:.1f}",
                   f"{q2['bits_per_dim']:.2f} ± {q2['bits_per_dim_standard_error']:.2f}",
                   f"FID {q2['samples_quality']['fid']:.1f}", f"FID {q2['conditional']['samples_quality']['fid']:.1f}"):
        assert quoted in rendered
    for text in rendered_markdown(nbformat.read(smoke_notebook, as_version=4)):
        found = [word for word in PROCESS_WORDS if re.search(rf"\b{re.escape(word)}", text.lower())]
        assert not found, f"{found} in rendered text: {text[:120]}"


def test_fp16_rerun_loads_every_stage_of_another_precision_and_trains_in_fp16(fp16_rerun_notebook):
    """The second execution, in fp16 with loss scaling: Question 1 loads every stage the first execution computed
    (in its own precision) and reproduces its metrics; Question 2, whose files were removed, trains and samples
    again in fp16 without a skipped first step, a warning or an error."""
    folder = fp16_rerun_notebook.parent
    assert_clean_execution(fp16_rerun_notebook)
    first, second = (json.loads((folder / sub / "q1_metrics.json").read_text())
                     for sub in ("first_artifacts", "runs/smoke/seed0"))
    assert second["precision_of_this_execution"] == "fp16" and first["precision_of_this_execution"] != "fp16"
    assert second["seconds"]["precision"] == first["seconds"]["precision"], "loaded stages keep their precision"
    assert not second["seconds"]["computed_in_this_execution"]
    # what the stages computed is loaded; what is evaluated afresh (decoding, scoring) now runs in fp16
    for again, once in zip(second["sampling"]["settings"], first["sampling"]["settings"], strict=True):
        assert {k: again[k] for k in ("temperature", "guidance", "n", "class_histogram")} == \
            {k: once[k] for k in ("temperature", "guidance", "n", "class_histogram")}
        assert again["fid"] == pytest.approx(once["fid"], rel=0.05)
    assert second["prior"] == pytest.approx(first["prior"], rel=0.02)
    assert second["recon_mse"] == pytest.approx(first["recon_mse"], rel=0.05)
    log = (folder / "checkpoints" / "log.txt").read_text().splitlines()
    computed_first = {line.split()[3] for line in (folder / "first_log.txt").read_text().splitlines()
                      if line.split()[2] == "computed"}
    rerun = log[len((folder / "first_log.txt").read_text().splitlines()):]
    loaded = {line.split()[3] for line in rerun if line.split()[2] == "loaded"}
    computed = {line.split()[3] for line in rerun if line.split()[2] == "computed"}
    q2_stages = ("train_score_model", "sample_images", "test_set_bits_per_dim")
    assert {name for name in computed_first if not name.startswith(q2_stages)} <= loaded
    assert computed and all(name.startswith(q2_stages) for name in computed)
    q2 = json.loads((folder / "runs" / "smoke" / "seed0" / "q2_metrics.json").read_text())
    assert q2["precision_of_this_execution"] == "fp16" and not any(line.split()[2] == "resumed" for line in rerun)
    assert set(q2["seconds"]["precision"].values()) <= {"fp16", first["precision_of_this_execution"]}
    assert q2["seconds"]["precision"]["train_score_model"] == "fp16"


def test_a_smoke_run_writes_nothing_the_repository_commits(smoke_notebook):
    """The quick check must not overwrite the committed cpu run: its artifacts go to runs/smoke/, and `make run
    PROFILE=smoke` writes its executed notebook there too instead of over the committed one."""
    folder = smoke_notebook.parent
    assert (folder / "runs" / "smoke" / "seed0" / "q1_metrics.json").exists()
    assert not (folder / "artifacts").exists()
    import subprocess

    dry = subprocess.run(["make", "-n", "run", "PROFILE=smoke"], cwd=NOTEBOOK.parent, capture_output=True, text=True)
    command = next(line for line in dry.stdout.splitlines() if "nbconvert" in line)
    assert "--inplace" not in command and "runs/smoke" in command


def run_configuration(monkeypatch, namespace: dict) -> None:
    """Execute the configuration cells in `namespace`. Their set_matplotlib_formats starts an IPython shell, which
    replaces sys.modules["__main__"], where the stored stages find the notebook's classes: restore it afterwards."""
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    exec(configuration_source(), namespace)


@pytest.mark.parametrize("cuda, env, expected", [(True, None, "gpu"), (False, None, "cpu"), (True, "cpu", "cpu"),
                                                 (False, "smoke", "smoke")])
def test_profile_choice(monkeypatch, cuda, env, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    if env is None:
        monkeypatch.delenv("ASGN3_PROFILE", raising=False)
    else:
        monkeypatch.setenv("ASGN3_PROFILE", env)
    namespace = {}
    run_configuration(monkeypatch, namespace)                         # torch.device("cuda") needs no GPU to exist
    assert namespace["PROFILE"] == expected and namespace["DEVICE"].type == ("cuda" if cuda else "cpu")


def test_unknown_profile_is_refused_clearly(monkeypatch):
    monkeypatch.setenv("ASGN3_PROFILE", "tpu")
    expected = r"profile 'tpu' does not exist; choose one of \['auto', 'smoke', 'cpu', 'gpu'\]"
    with pytest.raises(ValueError, match=expected):
        run_configuration(monkeypatch, {})


def fixed_batch_outputs(nb):
    """{model: (output, loss)} of the cpu profile's VQ-VAE, prior and score network on one fixed batch, each built from
    the same seed, the score loss with its own noise generator (so that two calls differ only by the precision)."""
    config = nb.merged(nb.BASE, nb.OVERRIDES["cpu"])
    torch.manual_seed(0)
    x, labels = torch.rand(8, 1, 28, 28), torch.arange(8)
    q1, q2 = config["q1"], config["q2"]
    vqvae = nb.VQVAE(q1["vqvae"], "ema_restart").eval()               # eval: the EMA codebook stays as it is
    reconstruction, _ = vqvae(x)
    vq_loss, _ = vqvae.loss(x)
    codes = vqvae.encode(x)
    prior = nb.GatedPixelCNN.from_config(q1["vqvae"]["codebook_size"], q1["prior"])
    with nb.autocast():                                                 # as train_prior calls it
        prior_loss = nb.code_nll(prior, codes, labels)
        logits = prior(codes, labels)
    sde = nb.VESDE(**q2["sde"])
    net = nb.ScoreNet(sde.marginal_std, **q2["net"])
    t = torch.linspace(0.1, 1.0, len(x))
    with nb.autocast():
        score = net(x, t)
    score_loss = nb.dsm_loss(net, x, sde, q2["train"], q2["net"]["sigma_data"], torch.Generator().manual_seed(1))
    return {"vqvae": (reconstruction, vq_loss), "prior": (logits, prior_loss), "score": (score, score_loss)}


def test_mixed_precision_switch_keeps_shapes_and_losses(nb, monkeypatch):
    """The mixed-precision setting on the CPU: bf16 autocast (what "auto" picks on a CPU with AVX512-BF16) against
    fp32, on one fixed batch. Outputs keep their shapes, losses come back in fp32 and agree within bf16's
    precision, and bf16 does change them (the switch is not silently ignored)."""
    monkeypatch.setattr(nb, "AMP", None)
    fp32 = fixed_batch_outputs(nb)
    monkeypatch.setattr(nb, "AMP", torch.bfloat16)
    bf16 = fixed_batch_outputs(nb)
    for model, ((output32, loss32), (output16, loss16)) in {key: (fp32[key], bf16[key]) for key in fp32}.items():
        assert output16.shape == output32.shape, model
        assert loss16.dtype == loss32.dtype == torch.float32, model
        assert loss16.item() != loss32.item(), f"{model}: autocast changed nothing"
        assert loss16.item() == pytest.approx(loss32.item(), rel=0.01), model          # measured: at most 0.13%
        assert (output16.float() - output32).norm() <= 0.05 * output32.norm(), model  # measured: at most 0.9%


def test_mixed_precision_setting_picks_the_dtype(nb, monkeypatch):
    """"fp32" (the name the notebook prints) is no autocast, "bf16" and "fp16" force that dtype; "auto" on a GPU is
    bf16 from compute capability 8 (Ampere) on, fp16 before it; anything else is refused with the choices."""
    assert nb.autocast_dtype(torch.device("cpu"), "fp32") is None
    assert nb.autocast_dtype(torch.device("cpu"), "fp16") == torch.float16
    assert nb.autocast_dtype(torch.device("cuda"), "bf16") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert nb.autocast_dtype(torch.device("cuda"), "auto") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert nb.autocast_dtype(torch.device("cuda"), "auto") == torch.float16
    with pytest.raises(ValueError, match='mixed_precision must be "auto" or one of .fp32., .bf16., .fp16.; got .fp8.'):
        nb.autocast_dtype(torch.device("cpu"), "fp8")


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_every_profile_trains_and_samples_at_full_size(nb, profile):
    """Each profile's networks, built at their configured sizes, run one training step and a 2-step sampler on a
    tiny batch (catches a typo or a shape error in a profile that only a GPU would otherwise run)."""
    config = nb.merged(nb.BASE, nb.OVERRIDES[profile])
    torch.manual_seed(0)
    x, labels = torch.rand(4, 1, 28, 28), torch.tensor([0, 3, 5, 9])
    q1 = config["q1"]
    for mode in nb.QUANTIZERS:
        nb.VQVAE({**q1["vqvae"], "hidden": q1["ablation"]["hidden"]}, mode)(x)
    vqvae = nb.VQVAE(q1["vqvae"], "ema_restart")
    total, _ = vqvae.loss(x)
    nb.ScheduledAdam(vqvae.parameters(), 1e-3, 10).step(total)
    codes, K = vqvae.encode(x), q1["vqvae"]["codebook_size"]
    prior = nb.GatedPixelCNN.from_config(K, q1["prior"])
    nb.ScheduledAdam(prior.parameters(), 1e-3, 10).step(nb.code_nll(prior, codes, labels))
    grids = nb.sample_codes(prior.eval(), labels[:2], seed=0, temperature=0.9, w=1.0)
    assert vqvae.decode(grids).shape == (2, 1, 28, 28)
    q2 = config["q2"]
    sde = nb.VESDE(**q2["sde"])
    net = nb.ScoreNet(sde.marginal_std, **q2["net"])
    nb.ScheduledAdam(net.parameters(), 1e-3, 10, clip=1.0).step(nb.dsm_loss(net, x, sde, q2["train"],
                                                                           q2["net"]["sigma_data"]))
    images, _ = nb.euler_maruyama(nb.score_function(net.eval()), sde, (2, 1, 28, 28), 2)
    conditional = nb.ScoreNet(sde.marginal_std, **q2["net"], n_classes=10).eval()
    guided = nb.predictor_corrector(nb.score_function(conditional, labels[:2], 1.0), sde, (2, 1, 28, 28), 2,
                                    q2["samplers"]["snr"])
    assert images.shape == guided.shape == (2, 1, 28, 28)
    assert nb.SmallClassifier(config["classifier"]["width"])(x).shape == (4, 10)


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_fp16_training_steps_from_the_first_step(nb, monkeypatch, profile):
    """Under fp16 autocast with loss scaling (the T4's mode, forced here on the CPU), the first training step of
    every network updates its weights: its gradients do not overflow at the initial loss scale, so no step is
    skipped and the learning-rate schedule raises no warning."""
    monkeypatch.setattr(nb, "AMP", torch.float16)
    config = nb.merged(nb.BASE, nb.OVERRIDES[profile])
    torch.manual_seed(0)
    x, labels = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    q1, q2 = config["q1"], config["q2"]
    vqvae = nb.VQVAE(q1["vqvae"], "ema_restart")
    codes = vqvae.encode(x)
    prior = nb.GatedPixelCNN.from_config(q1["vqvae"]["codebook_size"], q1["prior"])
    sde = nb.VESDE(**q2["sde"])
    net = nb.ScoreNet(sde.marginal_std, **q2["net"])

    def prior_loss():
        with nb.autocast():
            return nb.code_nll(prior, codes, labels)

    for model, loss, clip in [(vqvae, lambda: vqvae.loss(x)[0], None), (prior, prior_loss, None),
                              (net, lambda: nb.dsm_loss(net, x, sde, q2["train"], q2["net"]["sigma_data"]), 1.0)]:
        optimizer = nb.ScheduledAdam(model.parameters(), 1e-3, 10, clip=clip)
        assert optimizer.scaler.is_enabled()
        before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            optimizer.step(loss())
        assert optimizer.scaler.get_scale() == nb.ScheduledAdam.INITIAL_LOSS_SCALE, f"{type(model).__name__} overflowed"
        after = [p for p in model.parameters() if p.requires_grad]
        assert any(not torch.equal(a, b) for a, b in zip(before, after)), type(model).__name__


def test_a_typo_in_a_profile_is_refused_with_the_keys_it_could_mean(nb):
    with pytest.raises(KeyError, match="'q1.prior.chanels' is not a configuration key; did you mean 'channels'"):
        nb.merged(nb.BASE, {"q1": {"prior": {"chanels": 64}}})
    with pytest.raises(KeyError, match="the keys at this level are"):
        nb.merged(nb.BASE, {"zzz": {}})
    for override in nb.OVERRIDES.values():
        nb.merged(nb.BASE, override)                                   # every shipped profile is valid


def test_the_callers_values_take_precedence_over_the_notebooks_literals(nb):
    """The notebook says PROFILE = "auto"; the tests' loader asked for "test" and must get it."""
    assert 'PROFILE = "auto"' in configuration_source() and nb.PROFILE == "test"


def test_the_run_seed_comes_from_the_environment_and_sets_the_artifacts_folder(monkeypatch):
    monkeypatch.setenv("ASGN3_PROFILE", "cpu")
    monkeypatch.setenv("ASGN3_SEED", "2")
    monkeypatch.delenv("ASGN3_ARTIFACTS", raising=False)
    namespace = {}
    run_configuration(monkeypatch, namespace)
    assert namespace["CFG"]["seed"] == 2 and namespace["ARTIFACTS"].as_posix() == "artifacts/seeds/seed2"
    assert namespace["CFG"]["classifier"]["seed"] == 0, "the yardstick keeps its own seed"


def question_cells(notebook, number: int) -> list:
    """The cells of Question `number`: from its "# Question N" heading to the next "# Question" heading."""
    cells, inside = [], False
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# Question"):
            inside = cell.source.startswith(f"# Question {number}")
        if inside:
            cells.append(cell)
    return cells


TYPED_CONFIGURATION = [r"\bK\s*=\s*\d", r"\bD\s*=\s*\d", r"\\log_2\s*\d", r"\d+\s*NFE", r"\d+\s+epochs?\b",
                       r"\d+\s+layers\b", r"\bw\s*=\s*\d", r"\bT\s*=\s*\d", r"\\beta\s*=\s*\d", r"\\sigma\s*=\s*\d",
                       r"\br\s*=\s*\d", r"\d+\s+(Heun\s+)?steps\b", r"\bsnr\s*\d", r"\\gamma\s*=\s*\d"]


def test_static_markdown_types_no_configuration_value():
    """Sizes, epochs, NFE, layer counts, guidance weights and temperatures come from the configuration; static
    Markdown names them (`K`, `nfe`) and code cells render their values, so a rerun with another profile stays
    true."""
    for source in markdown_sources(nbformat.read(NOTEBOOK, as_version=4)):
        typed = [match.group(0) for pattern in TYPED_CONFIGURATION for match in re.finditer(pattern, source)]
        assert not typed, f"{typed} typed in: {source[:150]}"


CONFIG_NOUNS = r"(?:codes?|epochs?|layers?|steps?|channels?|samples?|images?|blocks?|bits?|classes|digits)"
CONFIG_SETTINGS = (r"(?:temperature|guidance weight|guidance|weight|decay|snr|signal-to-noise ratio|dropout|"
                   r"learning rate|batch size|batch|width|threshold|spread)")


def configuration_numbers() -> set:
    """Every number in the configuration (BASE and the profiles' overrides) that a sentence could quote."""
    from lib.notebook_defs import notebook_constant

    found = set()

    def walk(value):
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found.add(float(value))
    walk(notebook_constant("BASE"))
    walk(notebook_constant("OVERRIDES"))
    return found


def quoted_settings(text: str) -> list:
    """The numbers of `text` written next to what they count ("1024 codes") or what they set ("temperature of
    0.7")."""
    quoted = [m.group(1) for m in re.finditer(rf"(\d[\d ]*(?:\.\d+)?)\s+{CONFIG_NOUNS}\b", text)]
    quoted += [m.group(1) for m in re.finditer(rf"\b{CONFIG_SETTINGS}\s+(?:of\s+|=\s*|at\s+)?(\d+(?:\.\d+)?)", text,
                                               flags=re.I)]
    return [float(q.replace(" ", "")) for q in quoted]


def test_static_markdown_writes_no_configuration_value_in_words():
    """"1024 codes" or "a temperature of 0.7" in static Markdown stops being true when the configuration changes:
    a number that equals a configured value, next to what it counts or sets, must be rendered from the
    configuration. Small integers (up to 10) are structure ("4 channels" of a 2x2 patch), not settings."""
    values = configuration_numbers()
    for source in markdown_sources(nbformat.read(NOTEBOOK, as_version=4)):
        typed = [q for q in quoted_settings(source) if q in values and (q > 10 or not q.is_integer())]
        assert not typed, f"{typed} typed in: {source[:150]}"


def test_the_configuration_check_catches_words_too():
    """The check above is not vacuous: the two sentences of issue 33 are caught."""
    values = configuration_numbers()
    for sentence in ("each image uses 1024 codes", "sampled at a temperature of 0.7"):
        assert any(q in values for q in quoted_settings(sentence)), sentence


@pytest.mark.parametrize("number", [1, 2])
def test_each_question_maps_exactly_its_sections(number):
    """The map at the top of a question lists the sections that follow, no more and no fewer."""
    cells = question_cells(nbformat.read(NOTEBOOK, as_version=4), number)
    text = "\n".join(cell.source for cell in cells if cell.cell_type == "markdown")
    mapped = set(re.findall(rf"\b({number}\.\d+)\b", cells[0].source.split("## ")[0]))
    mapped |= {f"{number}.{n}" for a, b in re.findall(rf"\b{number}\.(\d+)–{number}\.(\d+)", cells[0].source)
               for n in range(int(a), int(b) + 1)}
    headings = set(re.findall(rf"^## ({number}\.\d+)", text, flags=re.M))
    assert headings - {f"{number}.1"} == mapped, (sorted(headings), sorted(mapped))


ENGINEERING_WORDS = ("`make", "make run", "README", "tools/", "checkpoint", "(measured)", "artifacts/", "cache",
                     "pytest")


@pytest.mark.parametrize("number", [1, 2])
def test_answer_pages_speak_to_a_grader(number):
    """What a question's PDF prints before its appendix holds no repository words: Markdown cells, code cells
    that are printed (all but print-skip cells) and their docstrings."""
    for cell in question_cells(nbformat.read(NOTEBOOK, as_version=4), number):
        if "print-skip" in cell.metadata.get("tags", []):
            continue
        found = [word for word in ENGINEERING_WORDS if word in cell.source]
        assert not found, f"{found} in: {cell.source[:150]}"


def test_the_notebook_tools_and_tests_pass_ruff():
    """ruff (pyproject.toml's rules, line length 120 included: a code line of the notebook must fit the printed
    page) on the notebook, the tools and the tests."""
    import subprocess

    lint = subprocess.run([sys.executable, "-m", "ruff", "check", NOTEBOOK.name, "tools", "tests",
                           "written/figures.py"], cwd=NOTEBOOK.parent, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout[-3000:]


@pytest.mark.parametrize("number", [1, 2])
def test_answer_cells_are_short(number):
    """One idea per cell: no code cell of an answer longer than about 40 lines."""
    long = [cell.source.splitlines()[0] for cell in question_cells(nbformat.read(NOTEBOOK, as_version=4), number)
            if cell.cell_type == "code" and len(cell.source.splitlines()) > 45]
    assert not long, long
