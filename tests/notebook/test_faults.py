"""Fault injection on the notebook's files: a full disk, read-only folders, two executions writing one stage, and
a process killed while it saves. Each must end with a message that names the file, the cause and the fix, and with
every file that was good before still good.

A full disk and a read-only folder are real here: a small tmpfs, mounted (and remounted read-only) for the test,
so that they hold for root too, which chmod cannot stop. Where mounting is not permitted, those tests are skipped
with the reason."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tmpfs(tmp_path):
    """A mount point with a 2 MiB tmpfs, unmounted afterwards; `remount_read_only()` makes it read-only."""
    point = tmp_path / "mnt"
    point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({mounted.stderr.decode().strip()})")

    class Mount:
        path = point

        @staticmethod
        def remount_read_only():
            subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)

    yield Mount
    subprocess.run(["umount", "-l", str(point)], check=False)


def fill(folder: Path) -> None:
    """Fill the file system of `folder` to the last byte (unbuffered writes: the error comes from write)."""
    for chunk in (65536, 1):
        try:
            with open(folder / "filler", "ab", buffering=0) as file:
                while True:
                    file.write(b"\0" * chunk)
        except OSError:
            pass


def leftovers(folder: Path) -> list:
    return sorted(path.name for path in folder.rglob("*.tmp"))


def test_a_full_disk_keeps_the_last_good_metrics_and_says_so(nb, tmpfs, monkeypatch):
    monkeypatch.setattr(nb, "ARTIFACTS", tmpfs.path / "artifacts")
    good = nb.save_metrics("q9", {"fid": 1.0})
    fill(tmpfs.path)
    with pytest.raises(nb.StorageError) as error:
        nb.save_metrics("q9", {"fid": 2.0, "padding": "x" * 100_000})
    message = str(error.value)
    assert str(good) in message and "the disk is full" in message and "Fix:" in message
    assert json.loads(good.read_text())["fid"] == 1.0, "the previous metrics are intact"
    assert leftovers(tmpfs.path) == []
    with pytest.raises(nb.StorageError, match="q9_samples.npy: the disk is full"):
        nb.save_samples("q9_samples", torch.rand(400, 1, 28, 28))


def test_a_full_disk_during_a_checkpoint_save_warns_and_keeps_the_result(nb, tmpfs, monkeypatch, capsys):
    """torch.save reports a full disk as a RuntimeError about an 'unexpected pos'; the stage still returns what it
    computed, says which file could not be written and why, and leaves no partial file."""
    from test_stages import define

    monkeypatch.setattr(nb, "CHECKPOINTS", tmpfs.path / "checkpoints")
    define(nb, "@stage\ndef big(n):\n    return torch.ones(n)\n")
    assert nb.big(10).sum() == 10
    fill(tmpfs.path)
    result = nb.big(1_000_000)
    assert result.sum() == 1_000_000, "the computed result is returned"
    out = capsys.readouterr().out
    assert "could not write" in out and "big-" in out and "the disk is full" in out
    assert leftovers(tmpfs.path) == []
    assert nb.big(10).sum() == 10 and nb.STAGES[-1]["loaded"], "the earlier stage file is still good"


def test_a_read_only_folder_of_finished_stages_loads(nb, tmpfs, monkeypatch, capsys):
    from test_stages import define

    monkeypatch.setattr(nb, "CHECKPOINTS", tmpfs.path / "checkpoints")
    define(nb, "import types\nREADS = types.SimpleNamespace(calls=[])\n"
               "@stage\ndef finished(x):\n    READS.calls.append(x)\n    return x + 1\n")
    nb.finished(1)
    tmpfs.remount_read_only()
    assert nb.finished(1) == 2 and nb.STAGES[-1]["loaded"] and nb.READS.calls == [1]
    assert "cannot be written" in capsys.readouterr().out, "one note that the log is not kept"
    assert nb.finished(2) == 3, "a stage that must be computed runs, unstored"
    assert "could not write" in capsys.readouterr().out


def test_a_read_only_artifacts_folder_is_refused_before_any_training(nb, tmpfs):
    tmpfs.remount_read_only()
    with pytest.raises(nb.StorageError, match=r"artifacts folder .* cannot be written: .* the folder is read-only"):
        nb.check_writable(tmpfs.path / "artifacts", "artifacts")



def test_written_files_get_the_permissions_of_any_new_file(nb, tmp_path):
    """Metrics, samples and checkpoints are readable by whoever may read the folder (mkstemp gave 0600)."""
    previous = os.umask(0o022)
    try:
        path = nb.write_atomically(tmp_path / "q1_metrics.json", lambda file: file.write(b"{}"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and [p.name for p in tmp_path.iterdir()] == ["q1_metrics.json"]


def test_two_executions_checking_one_folder_do_not_remove_each_others_probe(nb, tmp_path):
    """Two runs started together on one checkpoints folder (found by `make run SEED=1` and `SEED=2`): each checks
    that the folder is writable, and neither may trip over the other's probe file."""
    errors = []

    def check_many():
        try:
            for _ in range(200):
                nb.check_writable(tmp_path, "checkpoints")
        except OSError as error:
            errors.append(error)

    workers = [threading.Thread(target=check_many) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors and not list(tmp_path.iterdir())


WORKER = textwrap.dedent("""
    import sys, time, torch
    from pathlib import Path
    sys.path.insert(0, {tools!r})
    from lib.notebook_defs import load_definitions
    nb = load_definitions(DEVICE=torch.device("cpu"), CHECKPOINTS=Path(sys.argv[1]), AMP=None, PRECISION="fp32",
                          PROGRESS=False)
    nb.CFG = nb.merged(nb.BASE, nb.OVERRIDES["smoke"])
    {body}
""")


def start(body: str, *args) -> subprocess.Popen:
    """A Python process that loads the notebook's definitions and runs `body` (sys.argv[1:] = args)."""
    script = WORKER.format(tools=str(ROOT / "tools"), body=textwrap.indent(textwrap.dedent(body), "").strip())
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_two_executions_compute_one_stage_once(tmp_path):
    """Two executions on one checkpoints folder (two Colab runtimes on one Drive folder) reach the same stage: one
    computes it, the other waits for the lock and loads the result."""
    body = """
        import os
        exec("@stage\\ndef slow(x):\\n    time.sleep(3)\\n    return os.getpid()\\n", nb.__dict__)
        print("result", nb.slow(1), "loaded", nb.STAGES[-1]["loaded"], flush=True)
    """
    workers = [start(body, tmp_path) for _ in range(2)]
    outputs = [worker.communicate(timeout=120)[0] for worker in workers]
    results = [line.split() for output in outputs for line in output.splitlines() if line.startswith("result")]
    assert len(results) == 2, outputs
    assert results[0][1] == results[1][1], "both got the same result"
    assert sorted(r[3] for r in results) == ["False", "True"], "one computed, one loaded"
    assert any("waiting: another execution is computing" in output for output in outputs)
    assert not list(tmp_path.glob("*.lock")) and leftovers(tmp_path) == []


@pytest.mark.slow
def test_concurrent_saves_and_loads_of_one_file_never_mix_or_fail(tmp_path):
    """Two writers save one checkpoint over and over while a reader loads it: every load is one writer's complete
    state, and no write fails (each writer has its own temporary file)."""
    writer = """
        checkpoint = nb.Checkpoint("shared", {"k": 1}, Path(sys.argv[1]))
        tag = int(sys.argv[2])
        for step in range(150):
            checkpoint.save({"writer": tag, "step": step, "payload": torch.full((20000,), float(tag))})
        print("done", flush=True)
    """
    reader = """
        checkpoint = nb.Checkpoint("shared", {"k": 1}, Path(sys.argv[1]))
        loads, mixed = 0, 0
        end = time.time() + 6
        while time.time() < end:
            state = checkpoint.load()
            if state is not None:
                loads += 1
                mixed += int(not bool((state["payload"] == state["writer"]).all()))
        print("loads", loads, "mixed", mixed, flush=True)
    """
    processes = [start(writer, tmp_path, 1), start(writer, tmp_path, 2), start(reader, tmp_path)]
    outputs = [process.communicate(timeout=180)[0] for process in processes]
    assert all("done" in output for output in outputs[:2]), outputs
    loads, mixed = (int(word) for word in outputs[2].split()[1::2][:2])
    assert loads > 0 and mixed == 0, outputs[2]
    assert "warning" not in "".join(outputs), "no write failed and no good file was set aside"
    assert not list(tmp_path.glob("*.corrupt"))


@pytest.mark.slow
def test_a_process_killed_while_saving_leaves_the_last_good_file(tmp_path):
    body = """
        checkpoint = nb.Checkpoint("killed", {"k": 1}, Path(sys.argv[1]))
        checkpoint.save({"version": 0, "payload": torch.zeros(10)})
        print("first saved", flush=True)
        for version in range(1, 10_000):
            checkpoint.save({"version": version, "payload": torch.full((2_000_000,), float(version))})
    """
    process = start(body, tmp_path)
    assert process.stdout.readline().startswith("first saved")
    time.sleep(1.5)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    state = torch.load(next(tmp_path.glob("killed-*.pt")), weights_only=False)
    assert bool((state["payload"] == state["version"]).all()), "a complete state, not a mix"
