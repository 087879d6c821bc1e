"""The notebook's Checkpoint and train_epochs: reuse, resume, refuse another configuration, survive corruption."""
import pytest
import torch


def make_parts():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def run_epoch_for(model, optimizer, counter):
    def run_epoch(epoch):
        counter.append(epoch)
        loss = model(torch.ones(4, 3)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": [loss.detach()]}
    return run_epoch


def train(nb, stage, config, model, optimizer, calls, epochs):
    """train_epochs on the toy model, recording the epochs actually run in `calls`."""
    return nb.train_epochs(stage, config, {"m": model, "o": optimizer}, run_epoch_for(model, optimizer, calls), epochs)


def test_same_config_reuses_the_trained_stage(nb):
    model, optimizer = make_parts()
    calls = []
    first = train(nb, "reuse", {"lr": 0.1}, model, optimizer, calls, 3)
    assert calls == [0, 1, 2] and len(first["history"]["loss"]) == 3
    fresh, fresh_opt = make_parts()
    torch.nn.init.zeros_(fresh.weight)
    again = train(nb, "reuse", {"lr": 0.1}, fresh, fresh_opt, calls, 3)
    assert calls == [0, 1, 2], "a finished stage must not train again"
    assert torch.equal(fresh.weight, model.weight) and again["history"] == first["history"]


def test_interrupted_stage_resumes_after_last_epoch(nb):
    model, optimizer = make_parts()
    calls = []
    train(nb, "resume", {"lr": 0.1}, model, optimizer, calls, 2)
    model, optimizer = make_parts()
    run = train(nb, "resume", {"lr": 0.1}, model, optimizer, calls, 4)
    assert calls == [0, 1, 2, 3] and run["resumed_epochs"] == 2 and len(run["history"]["loss"]) == 4


def test_changed_config_does_not_load_the_old_file(nb):
    model, optimizer = make_parts()
    calls = []
    train(nb, "config", {"lr": 0.1}, model, optimizer, calls, 1)
    train(nb, "config", {"lr": 0.2}, model, optimizer, calls, 1)
    assert calls == [0, 0], "another configuration must train from scratch"
    paths = {nb.Checkpoint("config", {"lr": lr}, nb.CHECKPOINTS).path for lr in (0.1, 0.2)}
    assert len(paths) == 2


def test_file_claiming_another_config_is_refused(nb):
    wrong = nb.Checkpoint("claim", {"lr": 0.1}, nb.CHECKPOINTS)
    torch.save({"config": {"lr": 0.9}, "epoch": 1}, wrong.path)
    with pytest.raises(RuntimeError, match="another configuration"):
        wrong.load()


def test_corrupt_file_is_reported_set_aside_and_retrained(nb, capsys):
    checkpoint = nb.Checkpoint("corrupt", {"lr": 0.1}, nb.CHECKPOINTS)
    checkpoint.path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.path.write_bytes(b"this is not a checkpoint")
    model, optimizer = make_parts()
    calls = []
    train(nb, "corrupt", {"lr": 0.1}, model, optimizer, calls, 1)
    assert calls == [0]
    assert "unreadable" in capsys.readouterr().out
    assert checkpoint.path.with_suffix(".corrupt").exists() and checkpoint.load()["epoch"] == 1


def test_non_finite_loss_stops_with_a_clear_message(nb):
    logs = {"loss": [torch.tensor(float(step)) for step in range(10)]}
    assert nb.read_back("stage", 0, logs) == {"loss": [float(step) for step in range(10)]}
    logs["loss"][7] = torch.tensor(float("nan"))
    with pytest.raises(FloatingPointError, match="loss became nan at step 7 of epoch 2"):
        nb.read_back("stage", 2, logs)


def test_training_stops_at_a_non_finite_loss_and_keeps_the_completed_epochs(nb):
    model, optimizer = make_parts()
    calls = []
    train(nb, "nan_stage", {"lr": 0.1}, model, optimizer, calls, 1)

    def exploding(epoch):
        return {"loss": [torch.tensor(float("inf"))]}

    with pytest.raises(FloatingPointError):
        nb.train_epochs("nan_stage", {"lr": 0.1}, {"m": model, "o": optimizer}, exploding, 2)
    state = nb.Checkpoint("nan_stage", {"lr": 0.1}, nb.CHECKPOINTS).load()
    assert state["epoch"] == 1, "the epoch that finished before the bad one stays saved"


def test_frechet_distance_of_gaussians_matches_closed_form(nb):
    rng = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=rng).double().numpy()
    b = (torch.randn(20000, 3, generator=rng) * 2 + 1).double().numpy()
    # means differ by 1 in each of 3 dims; covariances I and 4I: 3 + 3 * (1 + 4 - 2 * 2) = 6
    assert nb.frechet_distance(a, b) == pytest.approx(6.0, abs=0.15)
    assert nb.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
