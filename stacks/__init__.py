"""The CDK app: two stacks, one per architecture, sharing one detector package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from stacks.config import VqaConfig

ROOT = Path(__file__).resolve().parent.parent


def load_context() -> dict[str, Any]:
    """``cdk.json``'s context, so library-only synth (tests) sees the same feature flags."""
    return dict(json.loads((ROOT / "cdk.json").read_text())["context"])


def build_app(context: dict[str, Any] | None = None, *, outdir: str | None = None) -> cdk.App:
    """Build the app with both stacks; ``app.py`` and the tests both call this."""
    from stacks.distributed import DistributedStack
    from stacks.monolith import MonolithStack

    ctx = load_context() if context is None else context
    app = cdk.App(context=ctx, outdir=outdir)
    config = VqaConfig.from_context(app.node.try_get_context("vqa"))
    DistributedStack(app, "VqaDistributed", config=config)
    MonolithStack(app, "VqaMonolith", config=config)
    return app
