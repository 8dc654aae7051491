"""Synth-only tests of the monolith stack (no AWS account, no Docker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from stacks.constructs.orchestrator import HANDLER as ORCHESTRATOR_HANDLER

ROOT = Path(__file__).resolve().parents[2]
STACK = "VqaMonolith"
TAG = {"Key": "vqa:architecture", "Value": "monolith"}
#: The shards cdk.json deploys (the one place that says which detector runs where).
SHARD_DETECTORS = tuple(
    ",".join(shard)
    for shard in json.loads((ROOT / "cdk.json").read_text())["context"]["vqa"]["shards"]
)


@pytest.fixture(scope="module")
def template(templates: dict[str, Template]) -> Template:
    return templates[STACK]


@pytest.fixture(scope="module")
def resources(template: Template) -> dict[str, Any]:
    return dict(template.to_json()["Resources"])


def _of_type(resources: dict[str, Any], type_: str) -> dict[str, Any]:
    return {k: v for k, v in resources.items() if v["Type"] == type_}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container.get("Environment", [])}


# ---- compute -----------------------------------------------------------------------------


def test_asg_capacity_provider_with_managed_scaling_and_termination_protection(
    template: Template,
) -> None:
    template.has_resource_properties(
        "AWS::ECS::CapacityProvider",
        {
            "AutoScalingGroupProvider": {
                "AutoScalingGroupArn": Match.any_value(),
                "ManagedScaling": Match.object_like({"Status": "ENABLED"}),
                "ManagedTerminationProtection": "ENABLED",
            }
        },
    )
    template.has_resource_properties(
        "AWS::AutoScaling::AutoScalingGroup",
        {
            "MinSize": "0",
            "NewInstancesProtectedFromScaleIn": True,
            "LaunchTemplate": Match.any_value(),
        },
    )
    template.resource_count_is("AWS::ECS::ClusterCapacityProviderAssociations", 1)


def test_launch_template_requires_imdsv2_and_uses_the_ecs_optimised_al2023_ami(
    template: Template,
) -> None:
    template.has_resource_properties(
        "AWS::EC2::LaunchTemplate",
        {
            "LaunchTemplateData": Match.object_like(
                {
                    "MetadataOptions": Match.object_like(
                        {"HttpTokens": "required", "HttpPutResponseHopLimit": 1}
                    ),
                    "InstanceType": "c7i.large",
                    "BlockDeviceMappings": [
                        Match.object_like({"Ebs": Match.object_like({"Encrypted": True})})
                    ],
                }
            )
        },
    )
    params = template.to_json()["Parameters"]
    ssm = [p["Default"] for p in params.values() if "ecs" in str(p.get("Default", ""))]
    assert any("amazon-linux-2023" in s and "arm64" not in s for s in ssm), ssm


def test_one_service_per_shard_each_told_its_detector_subset(resources: dict[str, Any]) -> None:
    services = _of_type(resources, "AWS::ECS::Service")
    assert len(services) == len(SHARD_DETECTORS)
    for svc in services.values():
        props = svc["Properties"]
        assert props["CapacityProviderStrategy"][0]["CapacityProvider"]
        assert "LaunchType" not in props  # capacity provider, not a launch type
    task_defs = _of_type(resources, "AWS::ECS::TaskDefinition")
    groups = sorted(
        _env(td["Properties"]["ContainerDefinitions"][0])["VQA_DETECTORS"]
        for td in task_defs.values()
    )
    assert groups == sorted(SHARD_DETECTORS)
    images = {
        json.dumps(td["Properties"]["ContainerDefinitions"][0]["Image"])
        for td in task_defs.values()
    }
    assert len(images) == 1, "every shard runs the same container image"
    for td in task_defs.values():
        assert td["Properties"]["RequiresCompatibilities"] == ["EC2"]
        container = td["Properties"]["ContainerDefinitions"][0]
        env = _env(container)
        assert {"VQA_QUEUE_URL", "VQA_TABLE", "VQA_CHECKPOINT_BUCKET", "VQA_SHARD"} <= set(env)
        assert container["ReadonlyRootFilesystem"] is True
        assert container["User"] == "10001"
        assert container["StopTimeout"] >= 30
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"


# ---- queues and scaling ------------------------------------------------------------------


def test_each_shard_queue_has_a_dead_letter_queue_and_is_encrypted_tls_only(
    resources: dict[str, Any],
) -> None:
    queues = _of_type(resources, "AWS::SQS::Queue")
    with_redrive = {k: v for k, v in queues.items() if "RedrivePolicy" in v["Properties"]}
    assert len(with_redrive) == len(SHARD_DETECTORS)
    assert len(queues) == 2 * len(SHARD_DETECTORS)
    dlqs = set()
    for q in with_redrive.values():
        policy = q["Properties"]["RedrivePolicy"]
        assert policy["maxReceiveCount"] == 3
        dlqs.add(policy["deadLetterTargetArn"]["Fn::GetAtt"][0])
    assert dlqs == set(queues) - set(with_redrive)
    for q in queues.values():
        assert q["Properties"]["SqsManagedSseEnabled"] is True
    policies = _of_type(resources, "AWS::SQS::QueuePolicy")
    tls_denied: set[str] = set()
    for p in policies.values():
        for st in p["Properties"]["PolicyDocument"]["Statement"]:
            if st["Effect"] == "Deny" and st["Condition"]["Bool"]["aws:SecureTransport"] == "false":
                tls_denied.update(q["Ref"] for q in p["Properties"]["Queues"])
    assert tls_denied == set(queues)


def test_each_service_scales_on_its_queue_backlog(resources: dict[str, Any]) -> None:
    targets = _of_type(resources, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert len(targets) == len(SHARD_DETECTORS)
    for t in targets.values():
        assert t["Properties"]["ScalableDimension"] == "ecs:service:DesiredCount"
        assert t["Properties"]["MinCapacity"] == 0
    steps = [
        p
        for p in _of_type(resources, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
        if p["Properties"]["PolicyType"] == "StepScaling"
    ]
    assert len(steps) == 2 * len(SHARD_DETECTORS)  # scale-out and scale-in per shard
    alarms = _of_type(resources, "AWS::CloudWatch::Alarm").values()
    # The scaling alarms are those on the waiting jobs (the worker-stall alarm reads only the
    # in-flight ones and the workers' progress).
    backlog_alarms = [
        a
        for a in alarms
        if "ApproximateNumberOfMessagesVisible" in json.dumps(a["Properties"].get("Metrics"))
    ]
    assert len(backlog_alarms) == 2 * len(SHARD_DETECTORS)
    for alarm in backlog_alarms:
        names = {
            m["MetricStat"]["Metric"]["MetricName"]
            for m in alarm["Properties"]["Metrics"]
            if "MetricStat" in m
        }
        assert names == {
            "ApproximateNumberOfMessagesVisible",
            "ApproximateNumberOfMessagesNotVisible",
        }
        assert alarm["Properties"]["AlarmActions"], "the alarm must trigger a scaling policy"


# ---- network and permissions -------------------------------------------------------------


def test_no_nat_gateway_and_gateway_endpoints_for_s3_and_dynamodb(
    template: Template, resources: dict[str, Any]
) -> None:
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    endpoints = _of_type(resources, "AWS::EC2::VPCEndpoint").values()
    services = sorted(json.dumps(e["Properties"]["ServiceName"]) for e in endpoints)
    assert len(services) == 2
    assert "dynamodb" in services[0] and "s3" in services[1]
    assert all(e["Properties"]["VpcEndpointType"] == "Gateway" for e in endpoints)


def test_no_inbound_rule_from_anywhere(resources: dict[str, Any]) -> None:
    for sg in _of_type(resources, "AWS::EC2::SecurityGroup").values():
        assert not sg["Properties"].get("SecurityGroupIngress"), sg
    for rule in _of_type(resources, "AWS::EC2::SecurityGroupIngress").values():
        assert rule["Properties"].get("CidrIp") != "0.0.0.0/0"
        assert rule["Properties"].get("CidrIpv6") != "::/0"


def _actions(st: dict[str, Any]) -> list[str]:
    return st["Action"] if isinstance(st["Action"], list) else [st["Action"]]


def _statements(resources: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for lid, res in resources.items():
        if res["Type"] == "AWS::IAM::Policy":
            out += [(lid, st) for st in res["Properties"]["PolicyDocument"]["Statement"]]
        if res["Type"] == "AWS::IAM::Role":
            for pol in res["Properties"].get("Policies", []):
                out += [(lid, st) for st in pol["PolicyDocument"]["Statement"]]
    return out


#: Actions AWS only accepts on Resource "*" (ECR login, the ECS agent's polling).
_ACCOUNT_WIDE = {
    "ecr:GetAuthorizationToken",
    "ecs:DiscoverPollEndpoint",
    "ecs:Poll",
    "ecs:StartTelemetrySession",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    # X-Ray has no resource-level permissions: the front door and the orchestrator trace
    # (VqaFunctions).
    "xray:PutTelemetryRecords",
    "xray:PutTraceSegments",
}


def test_permissions_are_scoped_grants_not_wildcards(resources: dict[str, Any]) -> None:
    statements = _statements(resources)
    assert statements
    for lid, st in statements:
        actions = _actions(st)
        assert "*" not in actions and not any(a.endswith(":*") for a in actions), (lid, st)
        if st.get("Resource") == "*":
            assert set(actions) <= _ACCOUNT_WIDE, (lid, actions)
    # The task roles get exactly the data-plane access the worker uses, on named resources.
    task_roles = [st for lid, st in statements if "TaskRole" in lid and st["Effect"] == "Allow"]
    granted = {a for st in task_roles for a in _actions(st)}
    assert {
        "sqs:ReceiveMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "sns:Publish",
        "s3:GetObject*",
        "s3:PutObject",
        "ecs:UpdateTaskProtection",
    } <= granted
    assert "dynamodb:Scan" not in granted
    # The orchestrator only records the request and sends jobs.
    orch = [st for lid, st in statements if "Orchestrator" in lid]
    assert orch
    orch_actions = {a for st in orch for a in _actions(st)}
    assert "sqs:SendMessage" in orch_actions and "sqs:ReceiveMessage" not in orch_actions


# ---- data, orchestrator, tags, outputs -----------------------------------------------------


def test_buckets_are_private_encrypted_and_tls_only(resources: dict[str, Any]) -> None:
    buckets = _of_type(resources, "AWS::S3::Bucket")
    assert len(buckets) == 2
    for b in buckets.values():
        props = b["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    for pol in _of_type(resources, "AWS::S3::BucketPolicy").values():
        statements = pol["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            st["Effect"] == "Deny"
            and st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            for st in statements
        )


def test_orchestrator_lambda_knows_every_shard_queue(template: Template) -> None:
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": ORCHESTRATOR_HANDLER,
            "Runtime": Match.string_like_regexp("python3"),
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "VQA_SHARD_QUEUES": Match.any_value(),
                        "VQA_TABLE": Match.any_value(),
                        "VQA_SHARD_DETECTORS": json.dumps(
                            {f"shard{i}": g.split(",") for i, g in enumerate(SHARD_DETECTORS)}
                        ),
                    }
                )
            },
        },
    )


def test_same_results_store_format_as_the_distributed_stack(template: Template) -> None:
    template.has_resource_properties(
        "AWS::DynamoDB::GlobalTable",
        {
            "KeySchema": [
                {"AttributeName": "stream", "KeyType": "HASH"},
                {"AttributeName": "defect", "KeyType": "RANGE"},
            ]
        },
    )
    template.resource_count_is("AWS::SNS::Topic", 1)


#: Types that CloudFormation tags and that must carry the architecture tag.
_TAGGED_TYPES = {
    "AWS::EC2::VPC",
    "AWS::EC2::Subnet",
    "AWS::EC2::SecurityGroup",
    "AWS::SQS::Queue",
    "AWS::S3::Bucket",
    "AWS::ECS::Cluster",
    "AWS::ECS::Service",
    "AWS::ECS::TaskDefinition",
    "AWS::Lambda::Function",
    "AWS::Logs::LogGroup",
    "AWS::SNS::Topic",
    "AWS::IAM::Role",
    "AWS::AutoScaling::AutoScalingGroup",
    "AWS::ECS::CapacityProvider",
}


def test_every_taggable_resource_is_tagged_with_the_architecture(
    resources: dict[str, Any],
) -> None:
    seen = set()
    for lid, res in resources.items():
        props = res.get("Properties", {})
        tags = props.get("Tags")
        if res["Type"] == "AWS::DynamoDB::GlobalTable":
            tags = props["Replicas"][0].get("Tags")
        if res["Type"] == "AWS::EC2::LaunchTemplate":
            specs = props["LaunchTemplateData"]["TagSpecifications"]
            tags = [t for s in specs for t in s["Tags"]]
        if isinstance(tags, list):
            pairs = [{"Key": t["Key"], "Value": t["Value"]} for t in tags]
            assert TAG in pairs, (lid, res["Type"])
            seen.add(res["Type"])
        elif res["Type"] in _TAGGED_TYPES:
            raise AssertionError(f"{lid} ({res['Type']}) has no tags")
    assert seen >= _TAGGED_TYPES
    asg = next(iter(_of_type(resources, "AWS::AutoScaling::AutoScalingGroup").values()))
    assert {**TAG, "PropagateAtLaunch": True} in asg["Properties"]["Tags"]
    # The instances and their EBS volumes are what the bill is mostly made of.
    lt = next(iter(_of_type(resources, "AWS::EC2::LaunchTemplate").values()))
    tagged = {
        spec["ResourceType"]
        for spec in lt["Properties"]["LaunchTemplateData"]["TagSpecifications"]
        if TAG in spec["Tags"]
    }
    assert {"instance", "volume"} <= tagged


def test_outputs_for_the_client(template: Template) -> None:
    outputs = template.to_json()["Outputs"]
    for name in (
        "OrchestratorFunctionName",
        "OrchestratorFunctionArn",
        "DefectsTableName",
        "AlertsTopicArn",
        "SourceBucketName",
        "CheckpointBucketName",
        "ClusterName",
        "shard0QueueUrl",
        "shard1QueueUrl",
        "shard0DeadLetterQueueUrl",
    ):
        assert name in outputs, name


def test_alerts_bus_with_put_events_for_the_task_roles_only(resources: dict[str, Any]) -> None:
    """Alerts for machines: a custom EventBridge bus beside the topic; each shard's task role
    may put events on it (and read back its alert records), nothing else may."""
    (bus_id,) = _of_type(resources, "AWS::Events::EventBus")
    assert TAG in resources[bus_id]["Properties"]["Tags"]
    puts = [(lid, st) for lid, st in _statements(resources) if "events:PutEvents" in _actions(st)]
    assert puts and all("TaskRole" in lid for lid, _ in puts)
    assert {lid.split("TaskRole")[0] for lid, _ in puts} == {"Shardshard0Task", "Shardshard1Task"}
    for _, st in puts:
        assert st["Resource"] == {"Fn::GetAtt": [bus_id, "Arn"]}
    task_reads = {
        a for lid, st in _statements(resources) if "TaskRole" in lid for a in _actions(st)
    }
    assert "dynamodb:GetItem" in task_reads  # vqa.alerts reads an alert record it found
    for task in _of_type(resources, "AWS::ECS::TaskDefinition").values():
        env = _env(task["Properties"]["ContainerDefinitions"][0])
        assert env["VQA_BUS_NAME"] == {"Ref": bus_id}
        # SQS's real ceiling (12 hours) unless a test overrides the task environment.
        assert env["VQA_VISIBILITY_CEILING_SECONDS"] == str(12 * 3600)
        assert json.loads(env["VQA_THRESHOLDS"]) == {}


def test_outputs_name_the_alerts_bus(template: Template) -> None:
    outputs = template.to_json()["Outputs"]
    assert outputs["AlertsBusName"]["Value"]["Ref"] in template.find_resources(
        "AWS::Events::EventBus"
    )


def test_cdk_json_thresholds_reach_only_their_shards_task_definition() -> None:
    import aws_cdk as cdk

    from stacks import load_context
    from stacks.config import VqaConfig
    from stacks.monolith import MonolithStack

    ctx = load_context()
    config = VqaConfig.from_context(
        {**ctx["vqa"], "thresholds": {"silence": {"min_duration": "0.5"}}}
    )
    stack = MonolithStack(cdk.App(context=ctx), "VqaMonolithThresholds", config=config)
    tasks = Template.from_stack(stack).find_resources("AWS::ECS::TaskDefinition").values()
    envs = {
        _env(t["Properties"]["ContainerDefinitions"][0])["VQA_DETECTORS"]: _env(
            t["Properties"]["ContainerDefinitions"][0]
        )["VQA_THRESHOLDS"]
        for t in tasks
    }
    assert envs == {
        shard: '{"silence": {"min_duration": 0.5}}' if "silence" in shard.split(",") else "{}"
        for shard in SHARD_DETECTORS
    }


# ---- variants, cfn-lint, cdk-nag -----------------------------------------------------------


@pytest.fixture(scope="module")
def graviton_private() -> Template:
    """The same stack with a Graviton instance type, private subnets and three shards."""
    import aws_cdk as cdk

    from stacks import load_context
    from stacks.config import VqaConfig
    from stacks.monolith import MonolithStack

    ctx = load_context()
    app = cdk.App(context=ctx)
    config = VqaConfig.from_context(
        {
            **ctx["vqa"],
            "instance_type": "c7g.large",
            "private_subnets": True,
            "shards": [["black", "freeze"], ["corruption"], ["silence", "clipping", "av_sync"]],
        }
    )
    stack = MonolithStack(app, "VqaMonolithVariant", config=config)
    return Template.from_stack(stack)


def test_graviton_instance_type_selects_the_arm64_ami_and_image(graviton_private: Template) -> None:
    params = graviton_private.to_json()["Parameters"]
    ssm = [p["Default"] for p in params.values() if "ecs" in str(p.get("Default", ""))]
    assert any("amazon-linux-2023/arm64" in s for s in ssm), ssm
    graviton_private.has_resource_properties(
        "AWS::EC2::LaunchTemplate",
        {"LaunchTemplateData": Match.object_like({"InstanceType": "c7g.large"})},
    )
    graviton_private.resource_count_is("AWS::ECS::Service", 3)


def test_private_subnets_switch_adds_one_nat_gateway(graviton_private: Template) -> None:
    graviton_private.resource_count_is("AWS::EC2::NatGateway", 1)
    resources = graviton_private.to_json()["Resources"]
    asg = next(iter(_of_type(resources, "AWS::AutoScaling::AutoScalingGroup").values()))
    private = {
        k
        for k, v in resources.items()
        if v["Type"] == "AWS::EC2::Subnet" and not v["Properties"].get("MapPublicIpOnLaunch")
    }
    assert {z["Ref"] for z in asg["Properties"]["VPCZoneIdentifier"]} <= private


def test_cfn_lint_reports_no_errors(template_files: dict[str, Path]) -> None:
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--format",
            "parseable",
            "--ignore-checks",
            "W3005",
            "--",
            str(template_files[STACK]),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [ln for ln in proc.stdout.splitlines() if ":E" in ln]
    assert not errors, "\n".join(errors)
    assert proc.returncode in (0, 4, 8, 12), proc.stderr  # 2 = errors, 4 = warnings, 8 = info


def test_cdk_nag_aws_solutions_passes_with_reasoned_acknowledgements(tmp_path: Path) -> None:
    # A fresh process: nag must see the stack exactly as `cdk synth` builds it.
    script = f"""
import aws_cdk as cdk, cdk_nag
from stacks import load_context
from stacks.config import VqaConfig
from stacks.monolith import MonolithStack
app = cdk.App(context=load_context(), outdir={str(tmp_path)!r})
MonolithStack(app, "VqaMonolith", config=VqaConfig.from_context(app.node.try_get_context("vqa")))
cdk.Validations.of(app).add_plugins(cdk_nag.AwsSolutionsChecks(app))
app.synth()
"""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    from stacks.monolith import NAG_ACKNOWLEDGEMENTS

    assert all(len(reason) > 40 for reason in NAG_ACKNOWLEDGEMENTS.values())
