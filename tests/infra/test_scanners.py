"""The deploy steps as the README gives them, up to the point that needs an AWS account:
``npx cdk synth`` with the pinned CLI (offline, no credentials, no Docker), then an independent
scanner (Checkov) over both templates it wrote. cfn-lint and cdk-nag run in the stack tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stacks import ROOT

STACKS = ("VqaDistributed", "VqaMonolith")
#: Where `make setup` installs Checkov: a venv of its own, because Checkov pins boto3, packaging
#: and networkx to versions the project's venv cannot share (requirements-checkov.txt).
CHECKOV = ROOT / ".cache" / "checkov-venv" / "bin" / "checkov"
#: The checks the README's command and this test run (offline, CloudFormation only).
CHECKOV_CONFIG = ROOT / ".checkov.yaml"

#: The Checkov checks that must not fail, by what they guard.
CHECKS: dict[str, dict[str, str]] = {
    "public access": {
        "CKV_AWS_20": "S3 bucket not readable by everyone",
        "CKV_AWS_57": "S3 bucket not writable by everyone",
        "CKV_AWS_53": "S3 block public ACLs",
        "CKV_AWS_54": "S3 block public policy",
        "CKV_AWS_55": "S3 ignore public ACLs",
        "CKV_AWS_56": "S3 restrict public buckets",
        "CKV_AWS_24": "no SSH from 0.0.0.0/0",
        "CKV_AWS_25": "no RDP from 0.0.0.0/0",
        "CKV_AWS_260": "no HTTP from 0.0.0.0/0",
        "CKV_AWS_33": "no wildcard principal in a KMS key policy",
    },
    "encryption": {
        "CKV_AWS_19": "S3 server-side encryption",
        "CKV_AWS_26": "SNS topic encrypted",
        "CKV_AWS_27": "SQS queue encrypted",
        "CKV_AWS_7": "customer-managed key rotation",
    },
    "IMDS": {"CKV_AWS_79": "IMDSv1 disabled"},
    "log retention": {"CKV_AWS_66": "log group retention set"},
    "unconstrained IAM writes": {
        "CKV_AWS_111": "no write access without constraints",
        "CKV_AWS_107": "no credentials exposure",
        "CKV_AWS_108": "no data exfiltration",
        "CKV_AWS_109": "no permissions management without constraints",
        "CKV_AWS_110": "no privilege escalation",
        "CKV_AWS_62": "no '*:*' admin policy",
        "CKV_AWS_63": "no '*' action",
        "CKV_AWS_60": "role assumable only by named principals",
        "CKV_AWS_61": "no assume-role across all services",
    },
}
#: Checks that fail on these templates and are outside those five concerns, and why they stay off.
NOT_CHECKED: dict[str, str] = {
    "CKV_AWS_18": "S3 access logs: a third bucket and a log record per frame object; cdk-nag S1 "
    "is acknowledged with the same reason (CloudTrail data events where an audit is needed).",
    "CKV_AWS_21": "S3 versioning: intermediate frames and checkpoints expire within a day and are "
    "rewritten by design; versions would only multiply the storage the A/B measures.",
    "CKV_AWS_115": "Function concurrency limits: reserved per function when vqa.max_streams is "
    "set; a new account's pool may be too small to reserve any (100 must stay unreserved).",
    "CKV_AWS_116": "Lambda DLQ: the functions are invoked synchronously by Step Functions, which "
    "retries and records failures; a DLQ only serves asynchronous invocations.",
    "CKV_AWS_117": "Lambda in a VPC: the functions reach only public AWS endpoints; a VPC would "
    "add NAT gateways (about $32/month each) to the cost under study.",
    "CKV_AWS_158": "Log group KMS keys: CloudWatch Logs encrypts every log group at rest; the logs "
    "hold no media or secrets, and a key per group is a cost outside the A/B.",
    "CKV_AWS_173": "Lambda environment KMS key: Lambda encrypts environments at rest; they hold "
    "resource names and tuning numbers, no secrets (cdk-nag ECS2 says the same of the tasks).",
    "CKV_AWS_65": "Container Insights: billed per task even when idle (cdk-nag ECS4).",
}


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)


def _architecture() -> str:
    from stacks import load_context
    from stacks.config import VqaConfig

    return VqaConfig.from_context(load_context()["vqa"]).lambda_architecture


#: A proxy that refuses every connection: whatever tries the network during synth fails fast.
_NO_NETWORK = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def cli_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``npx cdk synth`` as the README runs it: the pinned CLI from node_modules (never a
    download), no AWS credentials or metadata endpoint, no Docker, and no network once the
    layer cache is filled (the README's step before an offline synth)."""
    npx = shutil.which("npx")
    assert npx, "npx not found: install Node.js and run `npm ci` (the README's setup step)"
    fill = _run(
        [sys.executable, "-m", "stacks.constructs.packaging", "--architecture", _architecture()],
        cwd=ROOT,
        timeout=900,
    )
    assert fill.returncode == 0, fill.stderr[-3000:]
    out = tmp_path_factory.mktemp("cdk.out")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",  # do not probe for an instance role
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        CDK_DISABLE_CLI_TELEMETRY="true",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
        npm_config_offline="true",
        DOCKER_HOST="unix:///nonexistent/docker.sock",  # an image build would fail loudly
        HTTP_PROXY=_NO_NETWORK,
        HTTPS_PROXY=_NO_NETWORK,
        http_proxy=_NO_NETWORK,
        https_proxy=_NO_NETWORK,
        NO_PROXY="",
        no_proxy="",
    )
    proc = _run(
        [npx, "--no-install", "cdk", "synth", "--quiet", "--no-notices", "--output", str(out)],
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_npx_cdk_synth_uses_the_pinned_cli_and_writes_both_templates(cli_synth: Path) -> None:
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]
    installed = json.loads((ROOT / "node_modules" / "aws-cdk" / "package.json").read_text())
    assert installed["version"] == pinned
    manifest = json.loads((cli_synth / "manifest.json").read_text())
    stacks = {
        k for k, a in manifest["artifacts"].items() if a["type"] == "aws:cloudformation:stack"
    }
    assert stacks == set(STACKS)
    for stack in STACKS:
        template = json.loads((cli_synth / f"{stack}.template.json").read_text())
        assert template["Resources"], stack


@pytest.fixture(scope="module")
def checkov_report(cli_synth: Path) -> list[dict[str, Any]]:
    assert CHECKOV.is_file(), f"{CHECKOV} missing: `make setup` installs requirements-checkov.txt"
    args = [str(CHECKOV), "--config-file", str(CHECKOV_CONFIG), "--output", "json"]
    for stack in STACKS:
        args += ["--file", str(cli_synth / f"{stack}.template.json")]
    proc = _run(args, timeout=300, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: failed checks, reported below
    report = json.loads(proc.stdout)
    return report if isinstance(report, list) else [report]


def test_checkov_config_runs_exactly_the_checks_for_those_five_concerns() -> None:
    import yaml

    config = yaml.safe_load(CHECKOV_CONFIG.read_text())
    assert sorted(config["check"]) == sorted(c for group in CHECKS.values() for c in group)
    assert config["framework"] == ["cloudformation"] and config["skip-download"] is True


def test_checkov_finds_no_public_access_encryption_imds_log_retention_or_iam_failure(
    checkov_report: list[dict[str, Any]],
) -> None:
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({Path(c['file_path']).name})"
        for r in checkov_report
        for c in r["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    # Every selected check really ran on some resource, and every skip says why.
    evaluated = {
        c["check_id"]
        for r in checkov_report
        for c in r["results"]["passed_checks"] + r["results"]["skipped_checks"]
    }
    assert evaluated == {c for group in CHECKS.values() for c in group}
    for r in checkov_report:
        for c in r["results"]["skipped_checks"]:
            comment = c["check_result"].get("suppress_comment", "")
            assert len(comment.split()) >= 8, (c["check_id"], c["resource"])
    assert not set(NOT_CHECKED) & evaluated
