"""The notebook's own data loading (what runs on Colab with nothing but the notebook): it reads the IDX files
decompressed or as .gz, checks every file against its published SHA-256 before any training, downloads what is
missing, and says which file is wrong and what to do."""
import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torchvision

MIRROR = Path(__file__).resolve().parents[3] / "shared" / "data"
PREPARED = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture
def data_root(nb, tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "DATA_ROOT", str(tmp_path))
    return tmp_path


def place(root: Path, name: str, packed: bool) -> None:
    """The four files of `name` in <root>/<name>/raw, as .gz (from the shared mirror, or compressed here from
    data/) or decompressed."""
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    for path in sorted((PREPARED / name / "raw").glob("*-ubyte")):
        mirrored = MIRROR / name / "raw" / (path.name + ".gz")
        if not packed:
            shutil.copy(path, raw)
        elif mirrored.is_file():
            shutil.copy(mirrored, raw)
        else:
            (raw / (path.name + ".gz")).write_bytes(gzip.compress(path.read_bytes()))


def refuse_downloads(monkeypatch):
    def download(*args, **kwargs):
        raise AssertionError("the files are there: nothing should be downloaded")
    for name in ("MNIST", "FashionMNIST"):
        monkeypatch.setattr(torchvision.datasets, name, download)


def test_gz_files_alone_are_read_in_memory_and_nothing_is_written(nb, data_root, monkeypatch):
    place(data_root, "MNIST", packed=True)
    refuse_downloads(monkeypatch)
    before = sorted(path.name for path in data_root.rglob("*"))
    images, labels = nb.load_split("MNIST", train=False)
    assert images.shape == (10000, 1, 28, 28) and labels.shape == (10000,)
    assert sorted(path.name for path in data_root.rglob("*")) == before


def test_the_parsed_images_and_labels_are_torchvisions(nb, data_root):
    """Our IDX reader against torchvision's own reader of the same files."""
    place(data_root, "FashionMNIST", packed=False)
    images, labels = nb.load_split("FashionMNIST", train=False)
    reference = torchvision.datasets.FashionMNIST(str(data_root), train=False, download=False)
    assert np.array_equal((images[:, 0] * 255).round().byte().numpy(), reference.data.numpy())
    assert np.array_equal(labels.numpy(), reference.targets.numpy())


def test_a_corrupt_decompressed_file_beside_a_good_gz_is_passed_over(nb, data_root, capsys):
    place(data_root, "MNIST", packed=True)
    corrupt = data_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    corrupt.write_bytes(b"\x00\x00\x08\x01" + b"\x07" * 10)
    _, labels = nb.load_split("MNIST", train=False)
    assert len(labels) == 10000
    out = capsys.readouterr().out
    assert str(corrupt) in out and "delete it alone (its .gz beside it is intact)" in out


@pytest.mark.parametrize("damage", ["truncated", "not gzip"])
def test_a_damaged_gz_is_named_with_what_to_do(nb, data_root, damage):
    place(data_root, "MNIST", packed=True)
    packed = data_root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    packed.write_bytes(packed.read_bytes()[:5000] if damage == "truncated" else b"plain text, not gzip")
    with pytest.raises(nb.DataError, match=rf"{packed} is not a complete gzip file .*delete it and rerun"):
        nb.load_split("MNIST", train=False)


def test_a_corrupt_file_alone_is_refused_with_what_to_do(nb, data_root):
    place(data_root, "MNIST", packed=False)
    corrupt = data_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    corrupt.write_bytes(corrupt.read_bytes()[:-1] + b"\x07")
    with pytest.raises(nb.DataError, match=r"t10k-labels-idx1-ubyte does not have the published SHA-256.*delete it "
                                           r"and rerun"):
        nb.load_split("MNIST", train=False)


def test_every_file_of_both_questions_is_checked_at_once(nb, data_root, monkeypatch):
    """check_data (run in the set-up, before any training) names each bad file of either dataset, by its own
    name, in one message: a missing MNIST file is not found 17 minutes in, after Question 1."""
    place(data_root, "FashionMNIST", packed=True)
    place(data_root, "MNIST", packed=False)
    (data_root / "MNIST" / "raw" / "train-labels-idx1-ubyte").unlink()
    damaged = data_root / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(b"broken")
    monkeypatch.setattr(torchvision.datasets, "MNIST", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(nb.DataError) as error:
        nb.check_data()
    message = str(error.value)
    assert "MNIST/raw/train-labels-idx1-ubyte not found" in message and "offline" in message
    assert str(damaged) in message
    assert "train-images-idx3-ubyte" not in message, "only the files that are wrong are named"


def test_missing_files_are_downloaded_and_offline_the_error_says_what_to_do(nb, data_root, monkeypatch):
    calls = []

    def offline(root, download=False, **kwargs):
        calls.append(download)
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(nb.DataError, match=r"not found in .* the download failed .*Offline\? Put the four files"):
        nb.check_data()
    assert calls == [True], "with no files, the notebook asks torchvision to download them"


def test_a_read_only_folder_of_gz_files_is_enough(nb, tmp_path, monkeypatch):
    point = tmp_path / "ro"
    point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(point)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        place(point, "MNIST", packed=True)
        subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
        monkeypatch.setattr(nb, "DATA_ROOT", str(point))
        images, _ = nb.load_split("MNIST", train=False)
        assert len(images) == 10000
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)
