"""Where the notebook's runs with other seeds keep their results: artifacts/seeds/seed<N>/ (the cpu profile run with
ASGN3_SEED=N), beside the committed run's artifacts/ (seed 0). tools/bench.py and tools/results_table.py read them."""
from __future__ import annotations

import re
from pathlib import Path


def seed_folders(artifacts: Path) -> dict[int, Path]:
    """{N: artifacts/seeds/seed<N>} of every seed folder under `artifacts`, in the order of the seeds."""
    folders = {int(match.group(1)): folder for folder in (artifacts / "seeds").glob("seed*")
               if folder.is_dir() and (match := re.fullmatch(r"seed(\d+)", folder.name))}
    return dict(sorted(folders.items()))
