"""The notebook's own data loading (what runs on Colab with nothing but the notebook): it finds the IDX files
decompressed or as .gz, checks every file against its published SHA-256, and otherwise downloads them."""
import gzip
import shutil
from pathlib import Path

import pytest
import torchvision

MIRROR = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
PREPARED = Path(__file__).resolve().parent.parent / "data"


def raw_files(root: Path, name: str) -> list:
    return sorted((root / name / "raw").glob("*-ubyte"))


@pytest.fixture
def data_root(nb, tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "DATA_ROOT", str(tmp_path))
    return tmp_path


def place_gz_only(root: Path, name: str) -> None:
    """Only the four .gz files in <root>/<name>/raw (from the shared mirror, or compressed here from data/)."""
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    mirror = MIRROR / name / "raw"
    if mirror.is_dir():
        for packed in mirror.glob("*.gz"):
            shutil.copy(packed, raw)
    else:
        for path in raw_files(PREPARED, name):
            (raw / (path.name + ".gz")).write_bytes(gzip.compress(path.read_bytes()))


def test_gz_files_alone_are_decompressed_checked_and_loaded(nb, data_root):
    place_gz_only(data_root, "MNIST")
    images, labels = nb.load_split("MNIST", train=False)
    assert images.shape == (10000, 1, 28, 28) and labels.shape == (10000,)
    assert len(raw_files(data_root, "MNIST")) == 4
    assert not list((data_root / "MNIST" / "raw").glob("*.partial")), "no half-written file is left"


def test_decompressed_files_are_used_as_they_are(nb, data_root, monkeypatch):
    shutil.copytree(PREPARED / "FashionMNIST", data_root / "FashionMNIST")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", _no_download(torchvision.datasets.FashionMNIST))
    images, _ = nb.load_split("FashionMNIST", train=True, subset=100)
    assert images.shape == (100, 1, 28, 28) and 0 <= images.min() and images.max() <= 1


def _no_download(dataset_class):
    """The dataset class, refusing download=True: the test fails if the notebook tries to download."""
    def build(root, train=True, download=False, **kwargs):
        assert not download, "the files are there: nothing should be downloaded"
        return dataset_class(root, train=train, download=False, **kwargs)
    return build


def test_a_corrupt_file_is_refused_with_what_to_do(nb, data_root):
    shutil.copytree(PREPARED / "MNIST", data_root / "MNIST")
    corrupt = data_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    corrupt.write_bytes(corrupt.read_bytes()[:-1] + b"\x07")
    with pytest.raises(RuntimeError, match=r"t10k-labels-idx1-ubyte does not have the published SHA-256.*Delete it"):
        nb.load_split("MNIST", train=False)


def test_missing_files_are_downloaded_and_offline_the_error_says_what_to_do(nb, data_root, monkeypatch):
    calls = []

    def offline(root, download=False, **kwargs):
        calls.append(download)
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(RuntimeError, match=r"MNIST is not in .* could not be downloaded .*Offline\? Put the four"):
        nb.load_split("MNIST", train=True)
    assert calls == [True], "with no files, the notebook asks torchvision to download them"
