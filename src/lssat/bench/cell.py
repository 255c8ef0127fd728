"""Train one benchmark cell from its run folder: ``python -m lssat.bench.cell RUN_DIR``.

The run folder holds the cell's config (``cell_config.yaml``, written by the runner); the engine
writes its checkpoints, logs and run record there. Used by the subprocess launcher (also under
DDP: Lightning re-executes this command once per device) and by Slurm jobs.
Exit status: 0 done, 1 the run failed (error in error.txt and the record), 130 interrupted.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

import yaml

from lssat.bench import adapter
from lssat.errors import DataError


def read_cell_file(run_dir: Path) -> dict[str, Any]:
    """The cell file of a run folder: {"cell": axes, "runner": options, "config": training config}."""
    path = Path(run_dir) / adapter.CELL_CONFIG_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise DataError(f"{path}: cannot read the cell config ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise DataError(f"{path}: no 'config' mapping")
    return data


def run_cell(run_dir: Path) -> dict[str, Any] | None:
    """Train the cell of `run_dir` (resuming from its last checkpoint if there is one)."""
    data = read_cell_file(run_dir)
    return adapter.train_cell(data["config"], Path(run_dir), resume=adapter.has_checkpoint(run_dir),
                              **dict(data.get("runner") or {}))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: train the cell in the given run folder."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lssat.bench.cell RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(args[0])
    try:
        record = run_cell(run_dir)
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        (run_dir / "error.txt").write_text(traceback.format_exc() + f"{type(err).__name__}: {err}\n")
        print(f"cell {run_dir.name}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0 if record and record.get("status") == "done" else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
