"""tools/prepare_data.py: verified, atomic, idempotent, and clear when something is wrong."""
import gzip
import hashlib
import shutil

import prepare_data
import pytest

MIRROR = prepare_data.Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture
def small_manifest(tmp_path, monkeypatch):
    """A manifest of one tiny fake file, with a mirror folder holding its .gz."""
    payload = b"\x00\x00\x08\x01" + bytes(range(50))
    packed = gzip.compress(payload)
    mirror = tmp_path / "mirror"
    (mirror / "MNIST" / "raw").mkdir(parents=True)
    (mirror / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").write_bytes(packed)
    entry = prepare_data.DataFile("MNIST/raw/t10k-labels-idx1-ubyte", hashlib.sha256(payload).hexdigest())
    monkeypatch.setattr(prepare_data, "read_manifest", lambda: [entry])
    return mirror, payload


def test_the_checksums_are_the_notebooks_own(nb):
    """One source for the data checksums: prepare_data reads the table the notebook checks its files with."""
    assert {entry.relpath: entry.sha256 for entry in prepare_data.read_manifest()} == nb.IDX_SHA256


def test_a_truncated_gz_in_the_mirror_is_named_with_what_to_do(small_manifest, tmp_path):
    mirror, _ = small_manifest
    packed = mirror / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    packed.write_bytes(packed.read_bytes()[:-8])
    with pytest.raises(prepare_data.DataError, match=rf"{packed} is not a complete gzip file"):
        prepare_data.prepare(tmp_path / "data", mirror)


def test_mirror_fill_then_second_run_is_a_no_op(small_manifest, tmp_path):
    mirror, payload = small_manifest
    root = tmp_path / "data"
    assert prepare_data.prepare(root, mirror) == ["MNIST/raw/t10k-labels-idx1-ubyte"]
    target = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    assert target.read_bytes() == payload
    before = target.stat().st_mtime_ns
    assert prepare_data.prepare(root, mirror) == []
    assert target.stat().st_mtime_ns == before


def test_checksum_mismatch_names_file_and_checksums_and_leaves_nothing(small_manifest, tmp_path):
    mirror, _ = small_manifest
    corrupt = mirror / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    corrupt.write_bytes(gzip.compress(b"not the real file"))
    root = tmp_path / "data"
    with pytest.raises(prepare_data.DataError) as error:
        prepare_data.prepare(root, mirror)
    message = str(error.value)
    assert str(corrupt) in message and "expected sha256" in message and "actual   sha256" in message
    assert "fix:" in message
    raw = root / "MNIST" / "raw"
    assert not raw.exists() or list(raw.iterdir()) == []


def test_corrupt_existing_file_is_replaced(small_manifest, tmp_path):
    mirror, payload = small_manifest
    target = tmp_path / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    assert prepare_data.prepare(tmp_path / "data", mirror) == ["MNIST/raw/t10k-labels-idx1-ubyte"]
    assert target.read_bytes() == payload


def test_missing_mirror_falls_back_to_download(small_manifest, tmp_path, monkeypatch, capsys):
    _, payload = small_manifest
    monkeypatch.setattr(prepare_data, "from_official", lambda entry: payload)
    assert prepare_data.prepare(tmp_path / "data", tmp_path / "no-such-mirror") == ["MNIST/raw/t10k-labels-idx1-ubyte"]
    assert "falling back to the official download" in capsys.readouterr().err


def test_offline_without_mirror_says_what_to_do(small_manifest, tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(prepare_data.urllib.request, "urlopen", refuse)
    monkeypatch.delenv(prepare_data.MIRROR_ENV, raising=False)
    assert prepare_data.main(["--root", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert "could not download" in err and prepare_data.MIRROR_ENV in err


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def fail(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_data.os, "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        prepare_data.write_atomically(tmp_path / "f", b"data")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not MIRROR.is_dir(), reason="the shared data mirror is not beside the checkout")
def test_real_mirror_files_verify(tmp_path):
    """The committed checksums match the canonical files (one small file, to stay fast)."""
    entry = next(e for e in prepare_data.read_manifest() if e.relpath == "MNIST/raw/t10k-labels-idx1-ubyte")
    data = prepare_data.from_mirror(MIRROR, entry)
    assert hashlib.sha256(data).hexdigest() == entry.sha256
    shutil.rmtree(tmp_path)
