"""Fill data/<Name>/raw/ with the decompressed MNIST and Fashion-MNIST IDX files, checksum-verified.

torchvision's `MNIST` / `FashionMNIST` classes read `<root>/<Name>/raw/<file>` (decompressed); with those
present, `download=True` downloads nothing. This tool puts them there:

* from a local mirror folder holding `<Name>/raw/<file>.gz` (or the decompressed file), named by
  `--mirror` or the environment variable ASGN3_DATA_MIRROR (CI points it at ../shared/data);
* otherwise from the official download locations.

Every decompressed file is verified against the SHA-256 sums the notebook itself checks (its
IDX_SHA256 table: one source for both), written to a temporary file and renamed into place only once
verified, so an interrupted or corrupt run never leaves a partial file behind. A second run finds
everything in place and does nothing. A .gz is judged by what it decompresses to: the mirror's files
were recompressed, so their bytes differ from the official downloads while their content does not.

usage: python tools/prepare_data.py [--root data] [--mirror DIR]
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lib.notebook_defs import notebook_constant

MIRROR_ENV = "ASGN3_DATA_MIRROR"
OFFICIAL_URLS = {
    "MNIST": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
    "FashionMNIST": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}


class DataError(RuntimeError):
    """A data file is missing or does not match its published checksum."""


@dataclass(frozen=True)
class DataFile:
    """One IDX file: where it goes (`<Name>/raw/<file>`) and the SHA-256 of its decompressed content."""

    relpath: str
    sha256: str

    @property
    def dataset(self) -> str:
        return self.relpath.split("/")[0]

    @property
    def name(self) -> str:
        return self.relpath.rsplit("/", 1)[1]


def read_manifest() -> list[DataFile]:
    """The notebook's IDX_SHA256 table, {relpath: sha256 of the decompressed file}, as DataFile entries."""
    return [DataFile(relpath=relpath, sha256=digest) for relpath, digest in notebook_constant("IDX_SHA256").items()]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(data: bytes, expected: str, what: str, fix: str) -> None:
    """Raise DataError naming the file, both checksums and the fix when `data` does not hash to `expected`."""
    actual = sha256(data)
    if actual != expected:
        raise DataError(
            f"checksum mismatch for {what}\n  expected sha256 {expected}\n  actual   sha256 {actual}\n  fix: {fix}"
        )


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it into place (never a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_in_place(target: Path, entry: DataFile) -> bool:
    """True when the decompressed file exists and is intact (the idempotent fast path)."""
    return target.is_file() and sha256(target.read_bytes()) == entry.sha256


def from_mirror(mirror: Path, entry: DataFile) -> bytes:
    """The decompressed bytes from a mirror holding `<relpath>.gz` or `<relpath>`, verified against the checksum."""
    fix = f"replace the file in the mirror {mirror} with the canonical one, or unset {MIRROR_ENV} to download"
    gz_path, raw_path = mirror / f"{entry.relpath}.gz", mirror / entry.relpath
    if gz_path.is_file():
        try:
            data = gzip.decompress(gz_path.read_bytes())
        except (OSError, EOFError) as error:
            raise DataError(f"{gz_path} is not a complete gzip file ({error})\n  fix: {fix}") from error
        verify(data, entry.sha256, f"{gz_path} (decompressed)", fix)
        return data
    if raw_path.is_file():
        data = raw_path.read_bytes()
        verify(data, entry.sha256, str(raw_path), fix)
        return data
    raise DataError(f"{entry.relpath}(.gz) is not in the mirror folder {mirror}\n  fix: {fix}")


def from_official(entry: DataFile) -> bytes:
    """The decompressed bytes downloaded from the official locations (first that answers), verified."""
    errors = []
    for base in OFFICIAL_URLS[entry.dataset]:
        url = f"{base}{entry.name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                packed = response.read()
        except OSError as error:
            errors.append(f"{url}: {error}")
            continue
        try:
            data = gzip.decompress(packed)
        except (OSError, EOFError) as error:
            errors.append(f"{url}: not a complete gzip file ({error})")
            continue
        verify(data, entry.sha256, f"{url} (decompressed)", "retry later; if it persists the download has changed")
        return data
    raise DataError(
        f"could not download {entry.relpath}:\n  " + "\n  ".join(errors)
        + f"\n  fix: without internet, point {MIRROR_ENV} (or --mirror) at a folder holding <Name>/raw/<file>.gz, "
        "e.g. ../shared/data"
    )


def prepare(root: Path, mirror: Path | None) -> list[str]:
    """Put every IDX file under `root`; return the relative paths that were written (empty: nothing to do)."""
    if mirror is not None and not mirror.is_dir():
        print(f"warning: mirror folder {mirror} does not exist; falling back to the official download", file=sys.stderr)
        mirror = None
    written = []
    for entry in read_manifest():
        target = root / entry.relpath
        if is_in_place(target, entry):
            continue
        data = from_mirror(mirror, entry) if mirror is not None else from_official(entry)   # verified
        write_atomically(target, data)
        written.append(entry.relpath)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("data"), help="where <Name>/raw/ goes (default: data)")
    parser.add_argument("--mirror", type=Path, default=os.environ.get(MIRROR_ENV) or None,
                        help=f"local folder with <Name>/raw/*.gz (default: ${MIRROR_ENV}, else download)")
    args = parser.parse_args(argv)
    try:
        written = prepare(args.root, args.mirror)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"data: wrote {len(written)} file(s) under {args.root}/" if written
          else f"data: {args.root}/ already complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
