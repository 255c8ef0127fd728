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
    parser.add_argument("--reproduce", metavar="OTHER_DIR",
                        help="also check each significant finding of BENCH_DIR against OTHER_DIR (the same grid "
                             "with other seeds, e.g. `lssat bench --seeds 3,4,5 -o OTHER_DIR`); writes "
                             "BENCH_DIR/reproduce.md")
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
    if args.reproduce:
        from lssat.bench.reproduce import reproduce, summary, write_reproduction

        other = Path(args.reproduce)
        if not (other / "results.jsonl").is_file():
            raise DataError(f"{other}: no benchmark results to compare with (no results.jsonl)")
        collect_from_spec(other)
        out = write_reproduction(bench_dir, other)
        print(f"{summary(reproduce(bench_dir, other))}; wrote {out}")
    return 0
