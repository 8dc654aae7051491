"""The ``vqa`` command line: analyze, run, experiment, corpus.

Contract (DESIGN.md): with ``--json`` stdout holds exactly one JSON object and progress goes to
stderr; bad input prints one line on stderr naming the source and the reason and exits 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vqa.errors import BadSourceError, VqaError

EXIT_BAD_INPUT = 2

log = logging.getLogger("vqa")


def _detector_list(value: str) -> list[str]:
    from vqa.detectors import parse_names

    try:
        return parse_names(value)
    except VqaError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqa", description="Video quality analysis: find defects in audio/video streams."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", help="run the detectors over a source in this process")
    p.add_argument("source", help="local path, s3://bucket/key, or HLS/MPEG-TS URL")
    p.add_argument(
        "--detectors",
        type=_detector_list,
        default=None,
        help="comma-separated subset of: black,freeze,corruption,silence,clipping,av_sync",
    )
    p.add_argument("--segment-seconds", type=float, default=1.0)
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")

    p = sub.add_parser("run", help="run a source through one architecture (locally emulated)")
    p.add_argument("source")
    p.add_argument("--arch", choices=("distributed", "monolith"), required=True)
    p.add_argument(
        "--granularity",
        choices=("frame", "segment"),
        default=None,
        help="distributed: intermediate objects per frame or per segment",
    )
    p.add_argument(
        "--workflow",
        choices=("STANDARD", "EXPRESS"),
        default=None,
        help="distributed: Step Functions workflow type",
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("experiment", help="the A/B: both architectures on the same sources")
    p.add_argument("sources", nargs="*", help="sources (default: a generated sample clip)")
    p.add_argument("--out", type=Path, default=Path("out/experiment"))
    p.add_argument("--aws", action="store_true", help="use the deployed stacks instead of moto")
    p.add_argument(
        "--cost-explorer",
        nargs=2,
        metavar=("FROM", "TO"),
        default=None,
        help="with --aws: actual cost by vqa:architecture tag (YYYY-MM-DD)",
    )
    p.add_argument("--region", default=None)
    p.add_argument(
        "--no-variants",
        action="store_true",
        help="skip the Express and per-segment variants (faster)",
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("corpus", help="write clips with injected defects and truth.json")
    p.add_argument("outdir", type=Path)
    return parser


def _print_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _cmd_analyze(args: argparse.Namespace) -> int:
    from vqa.analyze import analyze, format_table

    result = analyze(
        args.source,
        detectors=args.detectors,
        segment_seconds=args.segment_seconds,
        progress=not args.json,
    )
    if args.json:
        _print_json(result.to_json())
    else:
        sys.stdout.write(format_table(result))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from vqa.analyze import format_table_json

    if args.arch == "distributed":
        from vqa.local.distributed import run_local as run_distributed

        out = run_distributed(
            args.source,
            granularity=args.granularity,
            workflow_type=args.workflow,
            progress=not args.json,
        )
    else:
        from vqa.local.monolith import run_local as run_monolith

        out = run_monolith(args.source, progress=not args.json)
    if args.json:
        _print_json(out)
    else:
        sys.stdout.write(format_table_json(out))
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    from vqa.experiment import run_experiment

    report = run_experiment(
        args.sources,
        out_dir=args.out,
        aws=args.aws,
        cost_explorer=args.cost_explorer,
        region=args.region,
        progress=not args.json,
        variants=not args.no_variants,
    )
    if args.json:
        _print_json(report)
    return 0


def _cmd_corpus(args: argparse.Namespace) -> int:
    from vqa.corpus import write_corpus

    truth = write_corpus(args.outdir)
    sys.stdout.write(f"wrote {len(truth['clips'])} clips and truth.json to {args.outdir}\n")
    return 0


COMMANDS = {
    "analyze": _cmd_analyze,
    "run": _cmd_run,
    "experiment": _cmd_experiment,
    "corpus": _cmd_corpus,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return COMMANDS[args.command](args)
    except BadSourceError as exc:
        print(f"vqa: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except VqaError as exc:
        print(f"vqa: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
