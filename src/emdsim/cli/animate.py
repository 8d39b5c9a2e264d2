"""``emdsim-animate``: the command of :mod:`emdsim.viz.animate`."""

from __future__ import annotations

import sys
from pathlib import Path

from emdsim.viz.animate import render


def main(argv: list[str] | None = None) -> None:
    from emdsim.cli.args import command_parser

    parser = command_parser(
        "emdsim-animate",
        "One recorded patient's course as an animation of the body map: marrow sites on a skeleton, each\n"
        "paraskeletal compartment beside its bone, organs around the blood, wounds below; colour and size\n"
        "give log10 cells, arrows the local (orange) and haematogenous (red) arrivals, the strip below the\n"
        "diagnosis, treatment lines, relapse, detections and death. Replayed from the run's\n"
        "snapshots.parquet, never re-simulated (raise sim.snapshot_patients to record more patients).",
        [
            ("emdsim-animate outputs/default/RUN", "first recorded patient with EMD at relapse"),
            ("emdsim-animate RUN --patient 3 --max-frames 200 --fps 12", "a patient by id"),
            ("emdsim-animate RUN --format mp4", "MP4 (pip install -e '.[video]')"),
        ],
        "RUN/patient_<id>.gif (or --out FILE).",
    )
    parser.add_argument("run_dir", type=Path, help="a finished run directory of emdsim")
    parser.add_argument(
        "--patient",
        default="first-emd-relapse",
        help="patient id, or first | first-emd-relapse (default) | first-em-relapse | first-emd",
    )
    parser.add_argument("--format", choices=("gif", "mp4"), default="gif")
    parser.add_argument("--out", type=Path, help="output file (default RUN_DIR/patient_<id>.<format>)")
    parser.add_argument("--max-frames", type=int, default=120, help="at most this many frames (default 120)")
    parser.add_argument("--fps", type=int, default=8, help="frames per second, 1-60 (default 8)")
    args = parser.parse_args(argv)

    def refuse(text: str) -> None:
        print(f"emdsim-animate: {text}", file=sys.stderr)
        raise SystemExit(2)

    for name in ("snapshots.parquet", "patients.parquet", "lesions.parquet", "config.yaml"):
        if not (args.run_dir / name).is_file():
            refuse(f"{args.run_dir} is not a finished run directory ({name} missing)")
    if not 2 <= args.max_frames <= 10_000:
        refuse(f"--max-frames={args.max_frames} is invalid: allowed [2, 10000]")
    if not 1 <= args.fps <= 60:
        refuse(f"--fps={args.fps} is invalid: allowed [1, 60] frames per second")
    if args.out is not None:
        if not args.out.parent.is_dir():
            refuse(f"--out={args.out} is invalid: its folder {args.out.parent} does not exist")
        if args.out.suffix.lower() != f".{args.format}":
            refuse(f"--out={args.out} is invalid: a .{args.format} file (or choose --format)")
    from emdsim.config.schema import ConfigError

    try:
        path, n = render(
            args.run_dir,
            patient=args.patient,
            out=args.out,
            fmt=args.format,
            max_frames=args.max_frames,
            fps=args.fps,
            progress=True,
        )
    except ConfigError as err:
        refuse(str(err))
    except ValueError as err:
        refuse(str(err))
    print(f"emdsim-animate: {n} frames -> {path}")


if __name__ == "__main__":
    main()
