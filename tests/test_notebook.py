"""The notebook end to end (smoke profile) and the conventions every part follows."""
import json

import nbformat
import numpy as np
import pytest
from notebook_defs import NOTEBOOK


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code" and cell.source.strip()]


def test_only_question_headings_are_top_level():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    headings = [line for cell in notebook.cells if cell.cell_type == "markdown"
                for line in cell.source.splitlines() if line.startswith("# ")]
    assert [h.split(":")[0] for h in headings] == ["# Question 1", "# Question 2"]


def test_notebook_never_reads_the_shared_folder():
    text = NOTEBOOK.read_text()
    assert "../shared" not in text and "shared/data" not in text


def test_smoke_run_has_no_errors_and_counts_in_order(smoke_notebook):
    notebook = nbformat.read(smoke_notebook, as_version=4)
    cells = code_cells(notebook)
    counts = [cell.execution_count for cell in cells]
    assert None not in counts and counts == sorted(counts)
    errors = [output for cell in cells for output in cell.outputs if output.output_type == "error"]
    assert not errors, errors[0]["evalue"] if errors else ""
    images = sum("image/png" in output.get("data", {}) for cell in cells for output in cell.outputs)
    assert images >= 10, "every part should show its figure"


def load_artifacts(smoke_notebook, name):
    folder = smoke_notebook.parent / "artifacts"
    return json.loads((folder / f"{name}_metrics.json").read_text()), np.load(folder / f"{name}_samples.npy")


def assert_images(samples, n):
    assert samples.dtype == np.uint8 and samples.shape == (n, 28, 28)
    assert samples.max() > 100 and samples.std() > 5, "samples should not be blank"


def test_question1_artifacts(smoke_notebook):
    metrics, samples = load_artifacts(smoke_notebook, "q1")
    per_class = 2                                           # the smoke profile's samples_per_class
    assert_images(samples, 10 * per_class)
    assert metrics["profile"] == "smoke" and metrics["device"] == "cpu"
    assert 0 < metrics["recon_mse"] < 1 and metrics["psnr_db"] == pytest.approx(-10 * np.log10(metrics["recon_mse"]))
    assert 1 <= metrics["perplexity"] <= metrics["codes_used"] <= metrics["codebook_size"]
    assert set(metrics["ablation"]) == {"plain", "ema", "ema_restart"}
    assert metrics["config"]["vqvae"]["quantizer"] in metrics["ablation"]
    assert metrics["prior"]["nll_bits_per_image"] == pytest.approx(metrics["prior"]["nll_bits_per_code"] * 49, rel=1e-6)
    for name in ("real_train_images", "test_reconstructions", "prior_samples", "uniform_code_samples", "final_samples"):
        report = metrics["quality"][name]
        assert report["fid"] >= 0 and 0 < report["mean_confidence"] <= 1
        assert sum(report["class_histogram"]) == report["n"]
    assert all(seconds >= 0 for seconds in metrics["seconds"].values())
    assert {"vqvae", "prior", "classifier", "sampling", "temperature", "this_execution"} <= set(metrics["seconds"])
    temperatures = [row["temperature"] for row in metrics["temperature"]["table"]]
    assert temperatures == [1.0, 0.7] and metrics["temperature"]["chosen"] in temperatures   # the smoke profile's


def test_question2_artifacts(smoke_notebook):
    metrics, samples = load_artifacts(smoke_notebook, "q2")
    assert_images(samples, 20)                              # the smoke profile's n_samples
    assert metrics["final_sampler"]["sampler"] in ("em", "pc")
    samplers = {row["sampler"] for row in metrics["sampler_table"]}
    assert {"em", "pc", "ode", "real training images"} == samplers
    assert metrics["final_sampler"]["guidance"] == metrics["config"]["guidance"]
    guidance = [row["guidance"] for row in metrics["guidance_table"]]
    assert guidance == [None, 0.0, metrics["config"]["guidance"]]     # no label, the smoke sweep, the table's w
    for name in ("unconditional", "given_label"):
        assert np.isfinite(metrics["likelihood"][name]["bits_per_dim"])
        assert metrics["likelihood"][name]["standard_error"] >= 0
    bound = metrics["likelihood"]["given_label"]["bits_per_dim"] + np.log2(10) / 784
    assert metrics["likelihood"]["mixture_bound"] == pytest.approx(bound, rel=1e-5)
    quality = metrics["samples_quality"]
    assert sum(quality["class_histogram"]) == 20 and 0 <= quality["accuracy_vs_intended_class"] <= 1
    assert {"score_model", "classifier", "sampler_comparison", "guidance_sweep", "final_samples", "likelihood",
            "this_execution"} <= set(metrics["seconds"])


def test_rerun_reuses_checkpoints(smoke_notebook):
    """The smoke run wrote one checkpoint per training stage, each keyed by its configuration."""
    names = sorted(path.name.rsplit("-", 1)[0] for path in (smoke_notebook.parent / "checkpoints").glob("*.pt"))
    assert names == sorted(["q1_ablation_plain", "q1_ablation_ema", "q1_ablation_ema_restart", "q1_vqvae", "q1_prior",
                            "fashion_classifier", "q2_score", "mnist_classifier"])


@pytest.mark.parametrize("profile", ["smoke", "cpu", "full"])
def test_every_profile_builds_working_models(nb, profile):
    """Each profile's configuration yields models that run a forward pass (catches typos in profiles)."""
    import torch

    config = nb.merged(nb.BASE, nb.OVERRIDES[profile])
    x = torch.rand(2, 1, 28, 28)
    vq = config["q1"]["vqvae"]
    for mode in config["q1"]["ablation"]["variants"]:
        reconstruction, q = nb.VQVAE(vq, mode)(x)
        assert reconstruction.shape == x.shape
    prior = config["q1"]["prior"]
    logits = nb.PixelCNNPrior(vq["codebook_size"], prior["channels"], prior["blocks"], prior["input_kernel"])(
        q["codes"], torch.tensor([0, 9]))
    assert logits.shape == (2, vq["codebook_size"], vq["grid"], vq["grid"])
    sde = nb.VESDE(**config["q2"]["sde"])
    score_net = nb.ScoreUNet(sde.marginal_std, **config["q2"]["net"])
    assert score_net(x, torch.rand(2)).shape == score_net(x, torch.rand(2), torch.tensor([0, 9])).shape == x.shape
    assert 0 <= config["q2"]["train"]["label_dropout"] < 1 and config["q2"]["guidance"] >= 0
    assert nb.SmallClassifier(config["classifier"]["width"])(x).shape == (2, 10)
    assert config["q2"]["train"]["weighting"] in ("std2", "likelihood")


def test_unknown_profile_is_refused_clearly(monkeypatch):
    """The configuration cell itself, run with a misspelt profile, names the valid ones."""
    cells = [cell.source for cell in nbformat.read(NOTEBOOK, as_version=4).cells if cell.cell_type == "code"]
    imports = next(source for source in cells if "import torch\n" in source)
    config = next(source for source in cells if "PROFILE = os.environ.get" in source)
    monkeypatch.setenv("ASGN3_PROFILE", "gpu")
    with pytest.raises(ValueError, match=r"'gpu' is not a profile; choose one of \['cpu', 'full', 'smoke'\]"):
        exec(imports + "\n" + config, {})
