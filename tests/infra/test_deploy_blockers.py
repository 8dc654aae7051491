"""Synth tests of issue 9's deploy blockers: each fails on the stacks as they were before.

- the worker's hand-back needs sqs:SendMessage on its own queue;
- the state machine's name is generated, so STANDARD <-> EXPRESS is a replacement CloudFormation
  can make;
- shard services scale no further than the capacity provider's instances hold;
- alarms reach a topic whose key CloudWatch may use;
- throttling is absorbed by reserved concurrency and long, jittered retries.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Capture, Match, Template

from stacks import ROOT, load_context
from stacks.capacity import CapacityError, TaskSize, check_capacity
from stacks.config import VqaConfig
from stacks.constructs.front_door import HANDLER as API_HANDLER
from stacks.constructs.orchestrator import HANDLER as ORCHESTRATOR_HANDLER
from stacks.monolith import MonolithStack
from tests.infra.conftest import EXPRESS_VARIANT

DISTRIBUTED, MONOLITH = "VqaDistributed", "VqaMonolith"


def _of_type(template: Template, type_: str) -> dict[str, dict[str, Any]]:
    return dict(template.find_resources(type_))


def _context(**vqa: Any) -> dict[str, Any]:
    ctx = load_context()
    ctx["vqa"] = {**ctx["vqa"], **vqa}
    ctx["aws:cdk:bundling-stacks"] = []  # these tests read the template only
    return ctx


# ---------------------------------------------------------------- 1. hand-back permission


def test_each_worker_may_send_its_job_back_to_its_own_queue_only(
    templates: dict[str, Template],
) -> None:
    template = templates[MONOLITH]
    resources = template.to_json()["Resources"]
    services = _of_type(template, "AWS::ECS::TaskDefinition")
    assert len(services) == 2
    queues = {
        k
        for k, r in _of_type(template, "AWS::SQS::Queue").items()
        if "RedrivePolicy" in r["Properties"]
    }
    for task_def in services.values():
        role = task_def["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
        env = {
            e["Name"]: e["Value"]
            for e in task_def["Properties"]["ContainerDefinitions"][0]["Environment"]
        }
        (own_queue,) = [q for q in queues if env["VQA_QUEUE_URL"] == {"Ref": q}]
        sends = [
            st
            for p in _of_type(template, "AWS::IAM::Policy").values()
            if {"Ref": role} in p["Properties"]["Roles"]
            for st in p["Properties"]["PolicyDocument"]["Statement"]
            if "sqs:SendMessage" in st["Action"] and st["Effect"] == "Allow"
        ]
        assert [st["Resource"] for st in sends] == [{"Fn::GetAtt": [own_queue, "Arn"]}], role
    assert resources  # the template was read


# ---------------------------------------------------------------- 2. generated state-machine name


def _provider_schema(type_name: str) -> dict[str, Any]:
    """CloudFormation's resource provider schema, as cfn-lint ships it (independent of CDK)."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    return dict(PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", type_name).schema)


def test_switching_workflow_type_is_a_replacement_cloudformation_can_make(
    templates: dict[str, Template], express_template: Template
) -> None:
    schema = _provider_schema("AWS::StepFunctions::StateMachine")
    # Changing the type replaces the resource; a custom name would make that replacement
    # impossible (CloudFormation creates the new resource before deleting the old).
    assert "/properties/StateMachineType" in schema["createOnlyProperties"]
    assert "/properties/StateMachineName" in schema["createOnlyProperties"]
    machines = {}
    for label, template in (("STANDARD", templates[DISTRIBUTED]), ("EXPRESS", express_template)):
        (logical_id, machine), *rest = _of_type(
            template, "AWS::StepFunctions::StateMachine"
        ).items()
        assert not rest
        assert "StateMachineName" not in machine["Properties"], label
        assert machine["Properties"]["StateMachineType"] == label
        machines[label] = logical_id
        # Nothing names it by a fixed string either (an ARN built from a name): outputs,
        # environments and policies use its Ref. (The role's trust condition names no machine.)
        text = json.dumps(template.to_json())
        assert not re.search(r":stateMachine:(?!\*)", text), label
    # The same logical resource in both: an update that replaces it, not a delete and a create.
    assert machines["STANDARD"] == machines["EXPRESS"]


# ---------------------------------------------------------------- 3. capacity that adds up


def test_shard_services_scale_no_further_than_the_instances_hold(
    templates: dict[str, Template],
) -> None:
    template = templates[MONOLITH]
    (asg,) = _of_type(template, "AWS::AutoScaling::AutoScalingGroup").values()
    (lt,) = _of_type(template, "AWS::EC2::LaunchTemplate").values()
    max_instances = int(asg["Properties"]["MaxSize"])
    instance_type = lt["Properties"]["LaunchTemplateData"]["InstanceType"]
    assert instance_type == "c7i.large"  # 2 vCPUs, 4 GiB (the EC2 instance type page)
    cpu_per_instance, installed_mib = 2 * 1024, 4 * 1024
    reserved = [
        (c["Cpu"], c["MemoryReservation"])
        for td in _of_type(template, "AWS::ECS::TaskDefinition").values()
        for c in td["Properties"]["ContainerDefinitions"]
    ]
    targets = _of_type(template, "AWS::ApplicationAutoScaling::ScalableTarget").values()
    max_tasks = {t["Properties"]["MaxCapacity"] for t in targets}
    assert len(max_tasks) == 1, "every stream runs one task of every shard"
    (streams,) = max_tasks
    # The agent registers the memory the kernel leaves, less ECS_RESERVED_MEMORY from the user
    # data; at most the installed memory in any case.
    user_data = json.dumps(lt["Properties"]["LaunchTemplateData"]["UserData"])
    agent_reserved = int(re.search(r"ECS_RESERVED_MEMORY=(\d+)", user_data).group(1))  # type: ignore[union-attr]
    usable_mib = installed_mib - agent_reserved
    assert streams * sum(c for c, _ in reserved) <= max_instances * cpu_per_instance
    assert streams * sum(m for _, m in reserved) <= max_instances * usable_mib
    # ... and it is not needlessly low: one more stream would not fit the CPU.
    assert (streams + 1) * sum(c for c, _ in reserved) > max_instances * cpu_per_instance
    # More vCPUs than a new account's On-Demand quota (the price table's dated figure): the
    # README says what that means.
    from vqa.pricing import load_prices

    quota = load_prices().quota("ec2_on_demand_standard_vcpus").value
    assert quota is not None and max_instances * 2 > quota


def test_registered_memory_follows_aws_documented_example() -> None:
    """One definition of what an instance offers ECS, used by the synth-time check and the cost
    model. AWS's example (ECS guide, "Reserving Amazon ECS Linux container instance memory"): an
    m4.large (2 vCPUs, 8 GiB installed) reports 7,985 MiB to the agent, and
    ECS_RESERVED_MEMORY=256 takes 256 MiB of that out of the pool for tasks."""
    from vqa.deployment import registered_capacity

    assert registered_capacity(vcpus=2, installed_mib=8192, ecs_reserved_memory_mib=0) == (
        2048,
        7985,
    )
    assert registered_capacity(vcpus=2, installed_mib=8192, ecs_reserved_memory_mib=256) == (
        2048,
        7985 - 256,
    )
    # The kernel's share scales with the memory: half the memory, half the pages to describe.
    assert registered_capacity(vcpus=2, installed_mib=4096, ecs_reserved_memory_mib=0)[1] in (
        7985 // 2,
        7985 // 2 + 1,
    )


def test_stack_check_and_cost_model_read_the_same_capacity(
    templates: dict[str, Template],
) -> None:
    """The cost model reads ECS_RESERVED_MEMORY from the launch template's user data: the value
    the synth-time check used, so both place tasks on the same registered memory."""
    from stacks.capacity import ECS_RESERVED_MEMORY_MIB
    from vqa.deployment import capacity_from_template
    from vqa.pricing import load_prices

    cap = capacity_from_template(templates[MONOLITH].to_json(), load_prices().instances)
    assert cap.ecs_reserved_memory_mib == ECS_RESERVED_MEMORY_MIB
    (asg,) = _of_type(templates[MONOLITH], "AWS::AutoScaling::AutoScalingGroup").values()
    targets = _of_type(templates[MONOLITH], "AWS::ApplicationAutoScaling::ScalableTarget")
    (max_tasks,) = {t["Properties"]["MaxCapacity"] for t in targets.values()}
    assert cap.streams_within(int(asg["Properties"]["MaxSize"])) == max_tasks


def test_capacity_is_a_placement_not_just_a_total() -> None:
    # 1.5-vCPU tasks: four 2-vCPU instances hold 8 vCPUs in total (five tasks' worth), but only
    # one such task fits on each instance.
    big = TaskSize("video", 1536, 1024)
    assert check_capacity([big], instance_type="c7i.large", max_instances=4) == 4
    # Small tasks fill the gaps the big ones leave: 1536 + 512 = 2048 units per instance.
    small = TaskSize("audio", 512, 512)
    assert check_capacity([big, small], instance_type="c7i.large", max_instances=4) == 4


def test_capacity_that_does_not_add_up_is_an_error_at_synth(tmp_path: Path) -> None:
    ctx = _context(max_streams=5)  # default: 4 x c7i.large hold 4 streams of 2 x 1 vCPU
    app = cdk.App(context=ctx, outdir=str(tmp_path))
    with pytest.raises(CapacityError, match=r"max_streams=5 .* 4 x c7i\.large hold 4 streams"):
        MonolithStack(app, MONOLITH, config=VqaConfig.from_context(ctx["vqa"]))
    with pytest.raises(CapacityError, match=r"more than one c7i\.large offers"):
        check_capacity([TaskSize("shard0", 4096, 1024)], instance_type="c7i.large", max_instances=9)
    with pytest.raises(ValueError, match="not in the capacity table"):
        VqaConfig.from_context({"instance_type": "t2.nano"})


# ---------------------------------------------------------------- 4. alarms that reach someone


@pytest.mark.parametrize("stack", [DISTRIBUTED, MONOLITH])
def test_alerts_topic_key_lets_cloudwatch_publish(
    templates: dict[str, Template], stack: str
) -> None:
    template = templates[stack]
    (key_id,) = _of_type(template, "AWS::KMS::Key")
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    template.has_resource_properties(
        "AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}}
    )
    template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        {
                            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                            "Effect": "Allow",
                            "Principal": {"Service": "cloudwatch.amazonaws.com"},
                            "Resource": "*",
                        }
                    ]
                )
            }
        },
    )
    template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "sns:Publish",
                                "Effect": "Allow",
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                            }
                        )
                    ]
                )
            }
        },
    )


def _alarms_by_metric(template: Template) -> dict[str, list[dict[str, Any]]]:
    (topic_id,) = _of_type(template, "AWS::SNS::Topic")
    out: dict[str, list[dict[str, Any]]] = {}
    for alarm in _of_type(template, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        if "MetricName" not in props:
            continue
        assert props["AlarmActions"] == [{"Ref": topic_id}], props
        out.setdefault(props["MetricName"], []).append(props)
    return out


def test_distributed_alarms_cover_every_function_and_failed_executions(
    templates: dict[str, Template],
) -> None:
    template = templates[DISTRIBUTED]
    functions = {
        k
        for k, r in _of_type(template, "AWS::Lambda::Function").items()
        if r["Properties"]["Runtime"].startswith("python")
    }
    alarms = _alarms_by_metric(template)
    for metric in ("Errors", "Throttles"):
        watched = {
            d["Value"]["Ref"]
            for a in alarms[metric]
            for d in a["Dimensions"]
            if d["Name"] == "FunctionName"
        }
        assert watched == functions, metric
    (machine_id,) = _of_type(template, "AWS::StepFunctions::StateMachine")
    (failed,) = alarms["ExecutionsFailed"]
    assert failed["Namespace"] == "AWS/States"
    assert failed["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": machine_id}}]
    assert failed["ComparisonOperator"] == "GreaterThanThreshold" and failed["Threshold"] == 0


def test_monolith_alarms_dead_letters_stalls_and_the_orchestrator(
    templates: dict[str, Template],
) -> None:
    template = templates[MONOLITH]
    (topic_id,) = _of_type(template, "AWS::SNS::Topic")
    alarms = _alarms_by_metric(template)
    dlqs = {
        r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for r in _of_type(template, "AWS::SQS::Queue").values()
        if "RedrivePolicy" in r["Properties"]
    }
    watched = {
        d["Value"]["Fn::GetAtt"][0]
        for a in alarms["ApproximateNumberOfMessagesVisible"]
        for d in a["Dimensions"]
    }
    assert watched == dlqs
    # The orchestrator and the front door (stacks/constructs/front_door.py): one alarm each.
    functions = {
        k
        for k, r in _of_type(template, "AWS::Lambda::Function").items()
        if r["Properties"].get("Handler") in (ORCHESTRATOR_HANDLER, API_HANDLER)
    }
    assert len(functions) == 2
    for metric in ("Errors", "Throttles"):
        watched = [a["Dimensions"] for a in alarms[metric]]
        assert sorted(map(str, watched)) == sorted(
            str([{"Name": "FunctionName", "Value": {"Ref": fn}}]) for fn in functions
        )

    # Jobs nobody picks up (no capacity, or the vCPU quota): the oldest waits ten minutes.
    job_queues = {
        k
        for k, r in _of_type(template, "AWS::SQS::Queue").items()
        if "RedrivePolicy" in r["Properties"]
    }
    waiting = alarms["ApproximateAgeOfOldestMessage"]
    assert {d["Value"]["Fn::GetAtt"][0] for a in waiting for d in a["Dimensions"]} == job_queues
    assert {(a["Threshold"], a["Statistic"]) for a in waiting} == {(600, "Maximum")}

    # Worker stalled: jobs in flight on a shard and no checkpoint logged for ten minutes.
    filters = _of_type(template, "AWS::Logs::MetricFilter")
    assert len(filters) == 2
    for f in filters.values():
        assert f["Properties"]["FilterPattern"] == '{ $.message = "checkpoint" }'
        (transform,) = f["Properties"]["MetricTransformations"]
        assert transform["Dimensions"] == [{"Key": "Shard", "Value": "$.shard"}]
    expression = Capture()
    template.resource_properties_count_is(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmActions": [{"Ref": topic_id}],
            "EvaluationPeriods": 10,
            "Metrics": Match.array_with(
                [Match.object_like({"Expression": expression, "ReturnData": True})]
            ),
        },
        2,
    )
    assert "inflight > 0" in expression.as_string() and "progress" in expression.as_string()
    # The stall signal is a line the worker really writes.
    worker = "\n".join(p.read_text() for p in (ROOT / "vqa" / "worker").glob("*.py"))
    assert re.search(r'log\.info\(\s*"checkpoint",\s*extra=\{[^}]*"shard"', worker)


# ---------------------------------------------------------------- 5. throttling by design


def test_per_segment_functions_reserve_the_configured_concurrency(
    templates: dict[str, Template], express_template: Template
) -> None:
    def reserved(template: Template) -> dict[str, Any]:
        return {
            r["Properties"]["Handler"].split(".")[2]
            + r["Properties"].get("Environment", {}).get("Variables", {}).get("DETECTOR", ""): r[
                "Properties"
            ].get("ReservedConcurrentExecutions")
            for r in _of_type(template, "AWS::Lambda::Function").values()
            if r["Properties"]["Runtime"].startswith("python")
        }

    sized = reserved(express_template)
    per_segment = {k for k in sized if k.startswith(("convert", "detect", "aggregate"))}
    deployed = load_context()["vqa"]["detectors"]
    assert len(per_segment) == 2 + len(deployed)  # convert, aggregate, one per detector
    assert {sized[k] for k in per_segment} == {EXPRESS_VARIANT["max_streams"]}
    assert sized["start"] is None and sized["handover"] is None  # once per stream / chunk
    # Unsized (cdk.json default): nothing reserved, a new account's pool may be below 100.
    assert set(reserved(templates[DISTRIBUTED]).values()) == {None}


def _throttle_retriers(template: Template) -> dict[str, dict[str, Any]]:
    capture = Capture()
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine", {"DefinitionString": {"Fn::Join": ["", capture]}}
    )
    # The definition's tokens (function ARNs) sit inside JSON strings: stand a word in for them.
    text = "".join(p if isinstance(p, str) else "token" for p in capture.as_array())
    states = json.loads(text)["States"]
    for branch in states["Detect"]["Branches"]:
        states.update(branch["States"])
    return {
        name: state["Retry"][0]
        for name, state in states.items()
        if state["Type"] == "Task" and name != "Record failure"
    }


def _nominal_waits(retrier: dict[str, Any]) -> list[float]:
    return [
        min(retrier["IntervalSeconds"] * retrier["BackoffRate"] ** n, retrier["MaxDelaySeconds"])
        for n in range(retrier["MaxAttempts"])
    ]


def test_throttle_retries_fit_each_workflow_type(
    templates: dict[str, Template], express_template: Template
) -> None:
    from stacks.constructs.workflow import EXPRESS_MAX_SEGMENTS, throttle_budget_seconds

    # The arithmetic the workflow module's comment states.
    assert throttle_budget_seconds("STANDARD") == 2 + 4 + 8 + 16 + 32 + 5 * 60
    assert throttle_budget_seconds("EXPRESS") == 2 + 4 + 8 + 16 + 32 + 60

    # Standard: minutes of throttling outlasted (the old three retries gave up after 7 s).
    for name, retrier in _throttle_retriers(templates[DISTRIBUTED]).items():
        assert sum(_nominal_waits(retrier)) >= 300, name
    # Express: a chunk of real-time segments plus the longest throttled wait stays inside the
    # 5-minute execution limit (a timed-out Express execution is neither caught nor recorded).
    segment_seconds = load_context()["vqa"]["segment_seconds"]
    for name, retrier in _throttle_retriers(express_template).items():
        waits = _nominal_waits(retrier)
        assert sum(waits) >= 120, name
        assert EXPRESS_MAX_SEGMENTS * segment_seconds + sum(waits) < 300, name


def test_cdk_app_reports_capacity_that_does_not_add_up_in_one_line(tmp_path: Path) -> None:
    """What `npx cdk synth -c vqa=...` shows: the app's one line, exit 2, no traceback."""
    context = {"vqa": {"max_streams": 9}, "aws:cdk:bundling-stacks": []}
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_OUTDIR": str(tmp_path),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    proc = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("cdk.json context vqa:")]
    assert len(lines) == 1 and "max_streams=9" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
