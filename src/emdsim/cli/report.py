"""``emdsim-report``: the command of :mod:`emdsim.viz.sweeps`."""

from __future__ import annotations

import sys
from pathlib import Path

from emdsim.studies import sweep
from emdsim.viz.sweeps import DEFAULT_METRICS, METRIC_LABELS, plot_sweep


def main(argv: list[str] | None = None) -> None:
    from emdsim.cli.args import command_parser

    parser = command_parser(
        "emdsim-report",
        "Figures of a sweep (emdsim -m) or design run: one swept parameter gives lines with 95 % intervals\n"
        "(across replicate seeds, or Wilson intervals of one cohort), two give heatmaps, more give one\n"
        "line plot per parameter; a design gives each output against each parameter. sweep.parquet is\n"
        "rebuilt from the job folders first, so an interrupted or running sweep can be drawn.",
        [
            ("emdsim-report sweeps/colonisation", "draw a finished sweep"),
            ("emdsim-report SWEEP_DIR --metrics em_at_relapse median_os_months", "chosen outputs"),
            ("emdsim-report SWEEP_DIR --status", "jobs done, failed and remaining"),
        ],
        "sweep_<parameter>.png, sweep_heatmap.png or sweep_design.png next to sweep.parquet.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the hydra.sweep.dir of an emdsim -m run")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=list(DEFAULT_METRICS),
        choices=sorted(METRIC_LABELS),
        metavar="METRIC",
        help=f"outputs to draw (default: {' '.join(DEFAULT_METRICS)})",
    )
    parser.add_argument(
        "--status",
        action="store_true",
        help="print jobs done, failed and remaining (e.g. of a running cluster sweep) and stop",
    )
    args = parser.parse_args(argv)
    from emdsim.config.schema import ConfigError

    try:
        sweep.check_sweep_dir(args.sweep_dir)
        if args.status:
            n = sweep.planned_jobs(args.sweep_dir)
            print(sweep.progress_line(args.sweep_dir, n))
            raise SystemExit(0)
        frame = sweep.write_table(args.sweep_dir)
    except ConfigError as err:
        print(f"emdsim-report: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        paths = plot_sweep(frame, args.sweep_dir, args.metrics)
    except ValueError as err:
        print(f"emdsim-report: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    for p in paths:
        print(f"emdsim-report: {p}")
    raise SystemExit(0)


if __name__ == "__main__":
    main()
