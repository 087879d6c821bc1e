"""The notebook's stages and checkpoints: reuse, resume (also across precision modes), keys that follow the
code, the values it reads and the inputs, refusal of a foreign file, survival of a corrupt one, and the training
loop's guards."""
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
import collections
CALLS = collections.UserList()    # a record of the calls, outside the key (plain data a stage reads is in it)

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
    define(nb, "import collections\nRUNS = collections.UserList()\n"
               "@stage\ndef scaled(x):\n    RUNS.append(x)\n    return Scale()(x)\n")
    nb.scaled(1.0)
    nb.scaled(1.0)
    define(nb, "class Scale(torch.nn.Module):\n    def forward(self, x):\n        return 4 * x\n")
    assert nb.scaled(1.0) == 4.0 and nb.RUNS == [1.0, 1.0]


def test_a_generator_argument_is_refused_with_a_hint(counted):
    with pytest.raises(TypeError, match="a seed rather than a generator"):
        counted.counted(torch.Generator())


TRAINER = """
import types
TOY = types.SimpleNamespace(epochs_run=[], interrupt_at=None)   # a library object: outside the key, so a rerun
                                                                 # resumes whatever the test sets here
@stage
def train_toy(epochs):
    model = torch.nn.Linear(3, 1)
    optimizer = ScheduledAdam(model.parameters(), 0.1, epochs * 2)

    def run_epoch(epoch):
        if epoch == TOY.interrupt_at:
            raise KeyboardInterrupt("simulated interruption")
        TOY.epochs_run.append(epoch)
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
    nb.TOY.interrupt_at = at
    with pytest.raises(KeyboardInterrupt):
        nb.train_toy(epochs)
    nb.TOY.interrupt_at = None
    [path] = nb.CHECKPOINTS.glob("train_toy-*.pt")
    return torch.load(path, weights_only=False)


@pytest.fixture
def trainer(nb, tmp_path, monkeypatch):
    """A stage `train_toy(epochs)` that trains through train_epochs and can be interrupted; fresh checkpoints."""
    return with_cell(nb, TRAINER, tmp_path, monkeypatch)


def test_an_interrupted_training_resumes_after_its_last_epoch(trainer):
    nb = trainer
    partial = interrupt(nb, 4, at=2)
    assert partial["epoch"] == 2 and nb.TOY.epochs_run == [0, 1]
    model, losses = nb.train_toy(4)
    assert nb.TOY.epochs_run == [0, 1, 2, 3] and len(losses) == 8 and losses[:4] == partial["history"]["loss"]
    again, _ = nb.train_toy(4)
    assert nb.TOY.epochs_run == [0, 1, 2, 3] and torch.equal(again.weight, model.weight), "finished: loaded"


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
    assert nb.TOY.epochs_run == [0, 1, 2] and losses[:4] == partial["history"]["loss"] and len(losses) == 6


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


def test_a_stage_records_the_precision_it_was_computed_in(counted, monkeypatch):
    """A stage computed in bf16 and loaded by an fp16 execution still says bf16 (the metrics report it per stage)."""
    nb = counted
    monkeypatch.setattr(nb, "PRECISION", "bf16")
    nb.counted(11)
    monkeypatch.setattr(nb, "PRECISION", "fp16")
    nb.counted(11)
    assert [(r["loaded"], r["precision"]) for r in nb.STAGES[-2:]] == [(False, "bf16"), (True, "bf16")]
    seconds = nb.stage_seconds(nb.STAGES[-2:], 0.0)
    assert seconds["precision"] == {"counted": "bf16"}


def test_a_resumed_training_records_both_precisions(trainer, monkeypatch):
    nb = trainer
    monkeypatch.setattr(nb, "PRECISION", "fp32")
    interrupt(nb, 3, at=1)
    monkeypatch.setattr(nb, "PRECISION", "fp16")
    nb.train_toy(3)
    assert nb.STAGES[-1]["precision"] == "fp16+fp32"


# ----------------------------------------------------------------------------- what a key covers
def key_of(nb, function) -> str:
    return nb.code_fingerprint(function)


def test_a_class_attribute_is_part_of_the_key(nb):
    """Flipping a class attribute (not a method) changes the key of every stage that uses the class: the mutant
    of issue 33, learns_by_gradient = False in VectorQuantizer, must not load the codebook-loss model."""
    define(nb, "class Knob:\n    enabled = True\n    def apply(self, x):\n        return x\n")
    define(nb, "def uses_knob(x):\n    return Knob().apply(x)\n")
    before = key_of(nb, nb.uses_knob)
    define(nb, "class Knob:\n    enabled = False\n    def apply(self, x):\n        return x\n")
    assert key_of(nb, nb.uses_knob) != before


def test_the_notebooks_own_class_attributes_reach_the_training_keys(nb, monkeypatch):
    before = key_of(nb, nb.train_vqvae), key_of(nb, nb.train_prior)
    monkeypatch.setattr(nb.VectorQuantizer, "learns_by_gradient", False)
    assert key_of(nb, nb.train_vqvae) != before[0]
    monkeypatch.setattr(nb.ScheduledAdam, "INITIAL_LOSS_SCALE", 2.0 ** 16)
    assert key_of(nb, nb.train_prior) != before[1]


def test_a_module_level_value_and_a_default_argument_are_part_of_the_key(nb):
    define(nb, "FACTOR = 2\ndef scale(x, offset=0):\n    return FACTOR * x + offset\n"
               "def uses_scale(x):\n    return scale(x)\n")
    before = key_of(nb, nb.uses_scale)
    nb.FACTOR = 3
    after_global = key_of(nb, nb.uses_scale)
    nb.scale.__defaults__ = (1,)
    assert len({before, after_global, key_of(nb, nb.uses_scale)}) == 3


def test_the_key_follows_calls_transitively_and_into_nested_functions(nb):
    """An edit three calls deep, or in a function that only a nested function (a training loop's run_epoch)
    calls, changes the key of the outer stage."""
    define(nb, "def deepest(x):\n    return x + 1\n")
    define(nb, "def middle(x):\n    return deepest(x)\n")
    define(nb, "def outer(x):\n    def inner(y):\n        return middle(y)\n    return inner(x)\n")
    before = key_of(nb, nb.outer)
    define(nb, "def deepest(x):\n    return x + 2\n")
    assert key_of(nb, nb.outer) != before


def test_a_stage_under_no_grad_is_hashed_by_its_own_code_not_by_the_run_settings(nb, monkeypatch):
    """torch.no_grad() over @stage wraps the wrapper: the hash must reach the stage's own function (an edit there
    changes it), not the wrapper's reading of the run's seed (which made seeds of one pipeline look different)."""
    define(nb, "@torch.no_grad()\n@stage\ndef gradless(x):\n    return x + 1\n")
    before = key_of(nb, nb.gradless)
    monkeypatch.setitem(nb.CFG, "seed", nb.CFG["seed"] + 7)
    assert key_of(nb, nb.gradless) == before
    define(nb, "@torch.no_grad()\n@stage\ndef gradless(x):\n    return x + 2\n")
    assert key_of(nb, nb.gradless) != before


def test_the_run_environment_is_not_part_of_the_key(nb, monkeypatch):
    """Where and how fast a stage runs (device, precision, folders, progress bars) is not what it computes: a rerun
    on another GPU type must load what was trained."""
    before = key_of(nb, nb.train_score_model)
    for name, value in {"AMP": torch.float16, "PRECISION": "fp16", "PROGRESS": True, "DATA_ROOT": "elsewhere"}.items():
        monkeypatch.setattr(nb, name, value)
    assert key_of(nb, nb.train_score_model) == before


def test_a_stage_with_a_seed_argument_is_keyed_and_seeded_by_it(nb, tmp_path, monkeypatch):
    """The classifier that scores every run takes its own seed: runs with other seeds share it."""
    monkeypatch.setattr(nb, "CHECKPOINTS", tmp_path)
    define(nb, "@stage\ndef draw(seed):\n    return torch.rand(3)\n")
    first = nb.draw(5)
    monkeypatch.setitem(nb.CFG, "seed", 1)
    assert torch.equal(nb.draw(5), first) and nb.STAGES[-1]["loaded"], "the run's seed does not enter its key"
    assert not torch.equal(nb.draw(6), first)


def test_a_pickle_that_is_not_a_checkpoint_is_set_aside(counted, capsys):
    nb = counted
    nb.counted(9)
    [path] = nb.CHECKPOINTS.glob("counted-*.pt")
    torch.save([1, 2, 3], path)
    assert nb.counted(9) == 18 and nb.CALLS == [9, 9]
    assert "holds a list, not a checkpoint" in capsys.readouterr().out
