"""The ``vqa`` command line: analyze, run, experiment, corpus, watch; submit, status, stop and
defects against a stack's front door (deployed, or local: ``serve``).

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

from vqa.errors import BadSourceError, ConfigError, VqaError

EXIT_BAD_INPUT = 2

log = logging.getLogger("vqa")


def _detector_list(value: str) -> list[str]:
    from vqa.detectors import parse_names

    try:
        return parse_names(value)
    except VqaError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_set_option(p: argparse.ArgumentParser) -> None:
    """``--set DETECTOR.FIELD=VALUE`` (repeatable); validated by :func:`_thresholds`."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="DETECTOR.FIELD=VALUE",
        help="override a detector threshold, e.g. black.min_duration=0.5 (repeatable)",
    )


def _thresholds(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    # Parsed here rather than as an argparse type so a bad value gives the one-line ConfigError
    # (exit 2) naming the detector and field, like every other bad input.
    from vqa.overrides import parse_overrides

    return parse_overrides(getattr(args, "overrides", None) or [])


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
        help="comma-separated detector names (default: every detector but loudness, which runs "
        "only when named; an unknown name is refused with the list)",
    )
    p.add_argument("--segment-seconds", type=float, default=1.0)
    _add_set_option(p)
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
    _add_set_option(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("experiment", help="the A/B: both architectures on the same sources")
    p.add_argument(
        "sources", nargs="*", help="sources (default: generated 720p25 and 1080p30 clips)"
    )
    p.add_argument(
        "--profile-seconds",
        type=float,
        default=60.0,
        help="length of the generated default clips (seconds, at least 4)",
    )
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

    p = sub.add_parser(
        "watch", help="follow a file or a live stream and print each defect event as it happens"
    )
    p.add_argument("source", help="local path, live HLS playlist or MPEG-TS URL")
    p.add_argument(
        "--arch",
        choices=("distributed", "monolith"),
        default=None,
        help="through a locally emulated architecture: print the alerts it publishes",
    )
    p.add_argument("--detectors", type=_detector_list, default=None)
    _add_set_option(p)
    p.add_argument("--segment-seconds", type=float, default=1.0)
    p.add_argument(
        "--loss-after",
        type=float,
        default=None,
        help="seconds without media that make input_loss (default: 3 target durations)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line, per event")
    _add_stack_commands(sub)
    return parser


def _add_front_door(p: argparse.ArgumentParser) -> None:
    """``--stack NAME`` (a deployed stack) or ``--endpoint URL`` (e.g. ``vqa serve``'s)."""
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--stack",
        help="the deployed stack (VqaDistributed or VqaMonolith): its ApiUrl output is used",
    )
    where.add_argument(
        "--endpoint",
        help="a front door's URL: a local one (vqa serve, http://127.0.0.1:PORT/) unsigned, "
        "any other https:// and signed",
    )


def _add_stack_commands(sub: Any) -> None:
    """``submit``, ``status``, ``stop``, ``defects``: a stack's front door (vqa.client);
    ``serve``: the front door of a locally emulated stack (vqa.local.api_server)."""
    p = sub.add_parser("submit", help="start monitoring a source on a stack")
    p.add_argument("source", help="http(s):// URL (live HLS, MPEG-TS) or s3://SOURCE_BUCKET/key")
    _add_front_door(p)
    p.add_argument("--detectors", type=_detector_list, default=None)
    _add_set_option(p)
    p.add_argument("--client-token", default=None, help="idempotency token: a retry is a no-op")
    p.add_argument("--json", action="store_true")
    for name, what in (
        ("status", "a stream's state, monitored time and defect counts"),
        ("stop", "stop monitoring a stream (takes effect at its next segment)"),
        ("defects", "a stream's defects so far, ended and open"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("id", help="the stream id submit printed")
        _add_front_door(p)
        p.add_argument("--json", action="store_true")
    p = sub.add_parser(
        "serve",
        help="the front door of a locally emulated stack on 127.0.0.1, until Ctrl-C",
    )
    p.add_argument("--arch", choices=("distributed", "monolith"), required=True)
    p.add_argument("--port", type=int, default=0, help="TCP port (default: any free port)")
    p.add_argument(
        "--detectors",
        type=_detector_list,
        default=None,
        help="deploy only these detectors (monolith: as one shard); default: cdk.json's",
    )
    _add_set_option(p)


def _print_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _cmd_analyze(args: argparse.Namespace) -> int:
    from vqa.analyze import analyze, format_table

    result = analyze(
        args.source,
        detectors=args.detectors,
        segment_seconds=args.segment_seconds,
        progress=not args.json,
        thresholds=_thresholds(args),
    )
    if args.json:
        _print_json(result.to_json())
    else:
        sys.stdout.write(format_table(result))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import inspect

    from vqa.analyze import format_table_json

    if args.arch == "distributed":
        from vqa.local.distributed import run_local
    else:
        from vqa.local.monolith import run_local  # type: ignore[assignment]
    kwargs: dict[str, Any] = {"progress": not args.json}
    if args.arch == "distributed":
        kwargs.update(granularity=args.granularity, workflow_type=args.workflow)
    thresholds = _thresholds(args)
    if thresholds:
        # The emulations take the overrides as ``thresholds=`` once they carry them to the
        # handlers and workers; until then say so instead of silently ignoring them.
        if "thresholds" not in inspect.signature(run_local).parameters:
            raise ConfigError(f"--set is not yet supported by the local {args.arch} emulation")
        kwargs["thresholds"] = thresholds
    out = run_local(args.source, **kwargs)
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
        profile_seconds=args.profile_seconds,
    )
    if args.json:
        _print_json(report)
    return 0


def _cmd_corpus(args: argparse.Namespace) -> int:
    from vqa.corpus import write_corpus

    truth = write_corpus(args.outdir)
    sys.stdout.write(f"wrote {len(truth['clips'])} clips and truth.json to {args.outdir}\n")
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    from vqa.local.watch import watch_emulated
    from vqa.watch import format_event, watch

    if not args.segment_seconds > 0 or (args.loss_after is not None and not args.loss_after > 0):
        raise ConfigError("--segment-seconds and --loss-after must be positive")

    def emit(obj: dict[str, Any]) -> None:
        line = json.dumps(obj) if args.json else format_event(obj)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()  # each event goes out as it happens, even into a pipe

    if args.arch is not None:
        if args.loss_after is not None:
            raise ConfigError("--loss-after: with --arch the stack's input-loss threshold applies")
        watch_emulated(
            args.arch,
            args.source,
            emit=emit,
            detectors=args.detectors,
            thresholds=_thresholds(args),
        )
        return 0
    watch(
        args.source,
        emit=emit,
        detectors=args.detectors,
        thresholds=_thresholds(args),
        segment_seconds=args.segment_seconds,
        loss_after=args.loss_after,
    )
    return 0


def _cmd_stack(args: argparse.Namespace) -> int:
    from vqa import client

    if args.endpoint is not None:
        api = client.ApiClient.for_endpoint(args.endpoint)
    else:
        api = client.ApiClient.for_stack(args.stack)
    if args.command == "submit":
        view = api.submit(
            args.source,
            detectors=args.detectors,
            thresholds=_thresholds(args),
            client_token=args.client_token,
        )
    elif args.command == "stop":
        view = api.stop(args.id)
    else:
        view = api.status(args.id)
    if args.json:
        body = view
        if args.command == "defects":
            body = {k: view[k] for k in ("id", "state", "defects", "open_defects")}
        _print_json(body)
    elif args.command == "submit":
        sys.stdout.write(f"{view['id']}\n")
    elif args.command == "defects":
        sys.stdout.write(client.defects_table(view) + "\n")
    else:
        sys.stdout.write(client.summary(view) + "\n")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from vqa.local.api_server import serve, stack_config

    config = stack_config(args.detectors, _thresholds(args))
    stop = threading.Event()

    def announce(url: str) -> None:
        sys.stdout.write(f"{url}\n")
        sys.stdout.flush()  # a script reads the endpoint from the pipe at once
        print(
            f"vqa serve: {args.arch} front door at {url} (Ctrl-C stops it and its streams)",
            file=sys.stderr,
        )

    # SIGINT (Ctrl-C) or SIGTERM: stop the streams, the workers and the emulation, exit 0.
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve(args.arch, port=args.port, stop=stop, announce=announce, config=config)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


COMMANDS = {
    "serve": _cmd_serve,
    "submit": _cmd_stack,
    "status": _cmd_stack,
    "stop": _cmd_stack,
    "defects": _cmd_stack,
    "analyze": _cmd_analyze,
    "run": _cmd_run,
    "experiment": _cmd_experiment,
    "corpus": _cmd_corpus,
    "watch": _cmd_watch,
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
