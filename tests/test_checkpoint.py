"""The notebook's stages and checkpoints: reuse, resume (also across precision modes), keys that follow the
code and the inputs, refusal of a foreign file, survival of a corrupt one, and the training loop's guards."""
import itertools
import linecache

import pytest
import torch

CELL_NUMBER = itertools.count()


def define(nb, source: str) -> None:
    """Run `source` in the notebook's namespace as a new cell would: inspect.getsource then finds its text."""
    filename = f"<test cell {next(CELL_NUMBER)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), nb.__dict__)


def with_cell(nb, source: str, checkpoints, monkeypatch):
    """The notebook with `source` defined as a new cell and its stages stored under `checkpoints` (fresh)."""
    monkeypatch.setattr(nb, "CHECKPOINTS", checkpoints)
    define(nb, source)
    return nb


COUNTER = """
CALLS = []

def double(x):
    return 2 * x

@stage
def counted(x, factor=1):
    CALLS.append(x)
    return double(x) * factor
"""


@pytest.fixture
def counted(nb, tmp_path, monkeypatch):
    """A stage `counted(x)` = double(x), which records every computation in nb.CALLS; fresh checkpoints."""
    return with_cell(nb, COUNTER, tmp_path, monkeypatch)


def test_a_stage_computes_once_per_key_and_loads_afterwards(counted):
    nb = counted
    assert nb.counted(3) == 6 and nb.counted(3) == 6 and nb.CALLS == [3]
    assert nb.counted(4) == 8 and nb.counted(3, factor=2) == 12 and nb.CALLS == [3, 4, 3]
    assert [record["loaded"] for record in nb.STAGES[-4:]] == [False, True, False, False]
    assert "loaded counted-" in (nb.CHECKPOINTS / "log.txt").read_text()


def test_a_stage_is_keyed_on_tensor_and_network_contents(counted):
    nb = counted
    x = torch.arange(4.0)
    nb.counted(x)
    nb.counted(x.clone())
    assert len(nb.CALLS) == 1, "an equal tensor is the same input"
    nb.counted(x + 1)
    assert len(nb.CALLS) == 2
    net = torch.nn.Linear(2, 2)
    assert nb.fingerprint(net) == nb.fingerprint(net)
    before = nb.fingerprint(net)
    with torch.no_grad():
        net.weight.add_(1)
    assert nb.fingerprint(net) != before, "retrained weights are another input"


def test_an_edited_function_recomputes_and_an_unedited_one_still_loads(counted):
    nb = counted
    nb.counted(5)
    define(nb, "def unrelated():\n    return 1\n")
    nb.counted(5)
    assert nb.CALLS == [5], "editing a function the stage does not use changes nothing"
    define(nb, "def double(x):\n    return x + x + 0\n")
    assert nb.counted(5) == 10 and nb.CALLS == [5, 5], "the stage uses double: its edit must recompute"
    define(nb, "def double(x):\n    return 2 * x\n")
    nb.counted(5)
    assert nb.CALLS == [5, 5], "back to the first source: the first file loads again"


def test_a_class_edit_reaches_the_stages_that_use_it(nb, tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "CHECKPOINTS", tmp_path)
    define(nb, "class Scale(torch.nn.Module):\n    def forward(self, x):\n        return 3 * x\n")
    define(nb, "RUNS = []\n@stage\ndef scaled(x):\n    RUNS.append(x)\n    return Scale()(x)\n")
    nb.scaled(1.0)
    nb.scaled(1.0)
    define(nb, "class Scale(torch.nn.Module):\n    def forward(self, x):\n        return 4 * x\n")
    assert nb.scaled(1.0) == 4.0 and nb.RUNS == [1.0, 1.0]


def test_a_generator_argument_is_refused_with_a_hint(counted):
    with pytest.raises(TypeError, match="a seed rather than a generator"):
        counted.counted(torch.Generator())


TRAINER = """
EPOCHS_RUN, INTERRUPT_AT = [], None     # plain data: not part of a stage's key, so a rerun resumes

@stage
def train_toy(epochs):
    model = torch.nn.Linear(3, 1)
    optimizer = Optimizer(model.parameters(), 0.1, epochs * 2)

    def run_epoch(epoch):
        if epoch == INTERRUPT_AT:
            raise KeyboardInterrupt("simulated interruption")
        EPOCHS_RUN.append(epoch)
        losses = []
        for _ in range(2):
            loss = model(torch.ones(4, 3)).pow(2).mean()
            optimizer.step(loss)
            losses.append(loss.detach())
        return {"loss": losses}

    history = train_epochs({"model": model, "optimizer": optimizer}, run_epoch, epochs)
    return model, history["loss"]
"""


def interrupt(nb, epochs: int, at: int) -> dict:
    """Run train_toy(epochs) until it is interrupted before epoch `at`; return the partial state it saved."""
    nb.INTERRUPT_AT = at
    with pytest.raises(KeyboardInterrupt):
        nb.train_toy(epochs)
    nb.INTERRUPT_AT = None
    [path] = nb.CHECKPOINTS.glob("train_toy-*.pt")
    return torch.load(path, weights_only=False)


@pytest.fixture
def trainer(nb, tmp_path, monkeypatch):
    """A stage `train_toy(epochs)` that trains through train_epochs and can be interrupted; fresh checkpoints."""
    return with_cell(nb, TRAINER, tmp_path, monkeypatch)


def test_an_interrupted_training_resumes_after_its_last_epoch(trainer):
    nb = trainer
    partial = interrupt(nb, 4, at=2)
    assert partial["epoch"] == 2 and nb.EPOCHS_RUN == [0, 1]
    model, losses = nb.train_toy(4)
    assert nb.EPOCHS_RUN == [0, 1, 2, 3] and len(losses) == 8 and losses[:4] == partial["history"]["loss"]
    again, _ = nb.train_toy(4)
    assert nb.EPOCHS_RUN == [0, 1, 2, 3] and torch.equal(again.weight, model.weight), "finished: loaded"


@pytest.mark.parametrize("saved, resumed", [(None, torch.float16), (torch.bfloat16, torch.float16),
                                            (torch.float16, None)])
def test_training_resumes_across_precision_modes(trainer, monkeypatch, saved, resumed):
    """Epochs saved under one mixed-precision mode (None is fp32) resume under another: the fp16 loss scale is
    dropped where no scaling is done, and started afresh where none was saved. Nothing trained is lost."""
    nb = trainer
    monkeypatch.setattr(nb, "AMP", saved)
    partial = interrupt(nb, 3, at=2)
    assert bool(partial["parts"]["optimizer"]["scaler"]) == (saved == torch.float16)
    monkeypatch.setattr(nb, "AMP", resumed)
    model, losses = nb.train_toy(3)
    assert nb.EPOCHS_RUN == [0, 1, 2] and losses[:4] == partial["history"]["loss"] and len(losses) == 6


def test_a_file_claiming_another_key_is_refused(nb, tmp_path):
    wrong = nb.Checkpoint("claim", {"lr": 0.1}, tmp_path)
    torch.save({"key": {"lr": 0.9}, "epoch": 1}, wrong.path)
    with pytest.raises(RuntimeError, match="another key"):
        wrong.load()


def test_a_corrupt_file_is_reported_set_aside_and_computed_again(counted, capsys):
    nb = counted
    nb.counted(7)
    [path] = nb.CHECKPOINTS.glob("counted-*.pt")
    path.write_bytes(b"this is not a checkpoint")
    assert nb.counted(7) == 14 and nb.CALLS == [7, 7]
    assert "unreadable" in capsys.readouterr().out
    assert path.with_suffix(".corrupt").exists() and path.exists()


def test_non_finite_loss_stops_with_a_clear_message(nb):
    logs = {"loss": [torch.tensor(float(step)) for step in range(10)]}
    assert nb.read_back(0, logs) == {"loss": [float(step) for step in range(10)]}
    logs["loss"][7] = torch.tensor(float("nan"))
    with pytest.raises(FloatingPointError, match="loss became nan at step 7 of epoch 2"):
        nb.read_back(2, logs)


def test_training_stops_at_a_non_finite_loss_and_keeps_the_completed_epochs(trainer):
    nb = trainer
    define(nb, TRAINER.replace("loss = model(torch.ones(4, 3)).pow(2).mean()",
                               "loss = model(torch.ones(4, 3)).pow(2).mean() * (float('inf') if epoch else 1)"))
    with pytest.raises(FloatingPointError):
        nb.train_toy(2)
    [path] = nb.CHECKPOINTS.glob("train_toy-*.pt")
    assert torch.load(path, weights_only=False)["epoch"] == 1, "the epoch before the bad one stays saved"


def test_frechet_distance_of_gaussians_matches_closed_form(nb):
    rng = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=rng).double().numpy()
    b = (torch.randn(20000, 3, generator=rng) * 2 + 1).double().numpy()
    # means differ by 1 in each of 3 dims; covariances I and 4I: 3 + 3 * (1 + 4 - 2 * 2) = 6
    assert nb.frechet_distance(a, b) == pytest.approx(6.0, abs=0.15)
    assert nb.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
