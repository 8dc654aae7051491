"""Synthesize the CDK app once per test session; every infrastructure test reads these."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")


@pytest.fixture(scope="session")
def cloud_assembly(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from stacks import build_app

    outdir = tmp_path_factory.mktemp("cdk.out")
    app = build_app(outdir=str(outdir))
    return app.synth()


@pytest.fixture(scope="session")
def templates(cloud_assembly):  # type: ignore[no-untyped-def]
    """``{"VqaDistributed": Template, "VqaMonolith": Template}`` (aws_cdk.assertions)."""
    from aws_cdk.assertions import Template

    return {s.stack_name: Template.from_json(s.template) for s in cloud_assembly.stacks}


@pytest.fixture(scope="session")
def template_files(cloud_assembly) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """Paths of the synthesized template JSON files (for cfn-lint)."""
    return {
        s.stack_name: Path(cloud_assembly.directory) / s.template_file
        for s in cloud_assembly.stacks
    }


#: The distributed variant the tests synthesize besides cdk.json's: Express, per-segment
#: objects, arm64, sized for 7 concurrent streams, private origins allowed past the SSRF guard
#: (synthesized once per session).
EXPRESS_VARIANT = {
    "workflow_type": "EXPRESS",
    "granularity": "segment",
    "lambda_architecture": "arm64",
    "max_streams": 7,
    "allowed_origins": ["10.20.0.0/16", ".encoders.internal"],
}


@pytest.fixture(scope="session")
def express_template(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The distributed stack's template with :data:`EXPRESS_VARIANT` (bundling skipped: the
    tests read the template only)."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from stacks import load_context
    from stacks.config import VqaConfig
    from stacks.distributed import DistributedStack

    ctx = load_context()
    ctx["vqa"] = {**ctx["vqa"], **EXPRESS_VARIANT}
    ctx["aws:cdk:bundling-stacks"] = []
    app = cdk.App(context=ctx, outdir=str(tmp_path_factory.mktemp("express")))
    stack = DistributedStack(app, "VqaDistributed", config=VqaConfig.from_context(ctx["vqa"]))
    return Template.from_stack(stack)
