"""`lssat report`: write the report of a benchmark folder from its results store."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        help="write the report of a benchmark folder (report.md, report.html, tables, plots)",
        description="Read BENCH_DIR/results.jsonl (collecting records that finished in run folders, e.g. from "
        "Slurm jobs) and write report.md, report.html, tables/*.csv|tex and plots/*.png into BENCH_DIR.",
    )
    parser.add_argument("bench_dir", help="a benchmark folder written by `lssat bench`")
    parser.add_argument("--no-pictures", action="store_true",
                        help="leave out the reconstruction pictures (they load each recipe's best weights)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from lssat.bench.report import write_report
    from lssat.bench.runner import collect_from_spec
    from lssat.errors import DataError

    bench_dir = Path(args.bench_dir)
    if not bench_dir.is_dir():
        raise DataError(f"{bench_dir}: no such benchmark folder")
    collected = collect_from_spec(bench_dir)
    if collected:
        print(f"collected {collected} finished record(s) from the run folders")
    path = write_report(bench_dir, pictures=not args.no_pictures)
    print(f"wrote {path}, {path.with_suffix('.html')}, {bench_dir / 'tables'}/ and {bench_dir / 'plots'}/")
    return 0
