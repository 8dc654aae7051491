"""``python -m vqa.worker``: settings from ``VQA_*`` (or options), then the worker loop."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from vqa.meter import Meter
from vqa.worker.clients import Clients
from vqa.worker.jobs import RESUME_MODES
from vqa.worker.logs import configure_logging
from vqa.worker.loop import Worker
from vqa.worker.selftest import self_test
from vqa.worker.settings import WorkerSettings

log = logging.getLogger("vqa.worker")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vqa.worker",
        description="VQA monolith shard worker: long-polls a shard queue and runs its detectors. "
        "Every option defaults to its VQA_* environment variable (set by the ECS task).",
    )
    p.add_argument("--queue-url", help="shard job queue (VQA_QUEUE_URL)")
    p.add_argument("--shard", help="shard name (VQA_SHARD)")
    p.add_argument("--detectors", help="comma-separated detector group (VQA_DETECTORS)")
    p.add_argument("--table", help="defects/status table (VQA_TABLE)")
    p.add_argument("--topic-arn", help="alerts topic (VQA_TOPIC_ARN)")
    p.add_argument("--checkpoint-bucket", help="checkpoint bucket (VQA_CHECKPOINT_BUCKET)")
    p.add_argument("--segment-seconds", type=float, help="VQA_SEGMENT_SECONDS")
    p.add_argument("--checkpoint-every", type=int, help="segments between checkpoints")
    p.add_argument("--visibility-seconds", type=int, help="job visibility timeout / heartbeat")
    p.add_argument("--max-receives", type=int, help="the queue's redrive maxReceiveCount")
    p.add_argument("--wait-seconds", type=int, help="long-poll wait (default 20)")
    p.add_argument("--retry-delay-cap", type=int, help="longest delay before a retry (s)")
    p.add_argument(
        "--resume",
        choices=RESUME_MODES,
        default=None,
        help="how a resumed job reaches its checkpoint: seek (default) or replay, which decodes "
        "the source from its start again (VQA_RESUME)",
    )
    p.add_argument(
        "--endpoint-url",
        default=os.environ.get("VQA_ENDPOINT_URL"),
        help="AWS endpoint override (local emulation; VQA_ENDPOINT_URL)",
    )
    p.add_argument("--region", default=None, help="AWS region (default: AWS_DEFAULT_REGION)")
    p.add_argument("--drain", action="store_true", help="exit when the queue is empty")
    p.add_argument(
        "--first-wait",
        type=int,
        default=0,
        help="with --drain: long-poll up to this many seconds (max 20) for the first job",
    )
    p.add_argument("--max-jobs", type=int, default=None, help="exit after this many jobs")
    p.add_argument(
        "--usage-out",
        default=os.environ.get("VQA_USAGE_OUT"),
        help="write the metered usage (JSON) to this file at exit (VQA_USAGE_OUT; the local "
        "emulation's metering, never set in ECS)",
    )
    p.add_argument(
        "--self-test",
        action="store_true",
        help="decode a generated clip with the detector group, print JSON, exit",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    meter = Meter()
    obs = configure_logging(meter)
    if args.self_test:
        names = [d for d in (args.detectors or os.environ.get("VQA_DETECTORS", "")).split(",") if d]
        report = self_test(names or None)
        sys.stdout.write(json.dumps(report) + "\n")
        return 0 if report["ok"] else 1
    settings = WorkerSettings.from_env(
        queue_url=args.queue_url,
        shard=args.shard,
        detectors=tuple(d for d in args.detectors.split(",") if d) if args.detectors else None,
        table=args.table,
        topic_arn=args.topic_arn,
        checkpoint_bucket=args.checkpoint_bucket,
        segment_seconds=args.segment_seconds,
        checkpoint_every=args.checkpoint_every,
        visibility_seconds=args.visibility_seconds,
        max_receives=args.max_receives,
        wait_seconds=args.wait_seconds,
        retry_delay_cap=args.retry_delay_cap,
        resume=args.resume,
    )
    if missing := settings.missing():
        print(f"vqa.worker: error: missing settings: {', '.join(missing)}", file=sys.stderr)
        return 2
    # Import the decoder and the detectors before the first job, not while it waits.
    import vqa.detectors
    import vqa.media  # noqa: F401

    clients = Clients.create(meter=meter, endpoint_url=args.endpoint_url, region=args.region)
    worker = Worker(settings, clients, meter=meter)
    worker.install_signal_handlers()
    log.info(
        "worker started",
        extra={"shard": settings.shard, "detectors": list(settings.detectors)},
    )
    try:
        done = worker.run(drain=args.drain, max_jobs=args.max_jobs, first_wait=args.first_wait)
        log.info("worker exiting", extra={"jobs_done": done, "jobs_failed": worker.jobs_failed})
    finally:
        obs.flush()  # outside Lambda nothing flushes the metrics at exit but this
        if args.usage_out:
            with open(args.usage_out, "w") as fh:
                json.dump(meter.snapshot(), fh)
    return 0
