"""Synth-only tests of the distributed stack: structure, security, packaging, lint, cdk-nag."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Capture, Match, Template

from stacks import load_context
from stacks.config import VqaConfig
from stacks.constructs.packaging import LAMBDA_UNZIPPED_LIMIT, tree_size
from stacks.constructs.workflow import (
    EXPRESS_MAX_SEGMENTS,
    HISTORY_EVENT_LIMIT,
    segments_per_execution,
)
from stacks.distributed import DistributedStack

STACK = "VqaDistributed"
TAG = {"Key": "vqa:architecture", "Value": "distributed"}


@pytest.fixture(scope="module")
def template(templates: dict[str, Template]) -> Template:
    return templates[STACK]


@pytest.fixture(scope="module")
def resources(template: Template) -> dict[str, dict[str, Any]]:
    return dict(template.to_json()["Resources"])


@pytest.fixture(scope="module")
def config() -> VqaConfig:
    return VqaConfig.from_context(load_context()["vqa"])


def _of_type(resources: dict[str, dict[str, Any]], type_: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in resources.items() if r["Type"] == type_}


def _function_by_env(resources: dict[str, dict[str, Any]], **env: str) -> str:
    """Logical id of the function whose environment holds ``env``."""
    found = [
        k
        for k, r in _of_type(resources, "AWS::Lambda::Function").items()
        if env.items() <= r["Properties"].get("Environment", {}).get("Variables", {}).items()
    ]
    assert len(found) == 1, (env, found)
    return found[0]


def _function_by_handler(resources: dict[str, dict[str, Any]], handler: str) -> str:
    found = [
        k
        for k, r in _of_type(resources, "AWS::Lambda::Function").items()
        if r["Properties"].get("Handler") == handler
    ]
    assert len(found) == 1, (handler, found)
    return found[0]


def _definition(template: Template) -> tuple[dict[str, Any], list[Any]]:
    """The ASL with every token replaced by ``"<token N>"``, and the tokens."""
    capture = Capture()
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine", {"DefinitionString": {"Fn::Join": ["", capture]}}
    )
    parts = capture.as_array()
    tokens = [p for p in parts if not isinstance(p, str)]
    text, n = "", 0
    for p in parts:
        if isinstance(p, str):
            text += p
        else:
            text += f"<token {n}>"
            n += 1
    return json.loads(text), tokens


def _token(ref: str, tokens: list[Any]) -> Any:
    m = re.fullmatch(r"<token (\d+)>", ref)
    assert m, ref
    return tokens[int(m.group(1))]


# ---------------------------------------------------------------- state machine


def test_state_machine_loops_convert_detect_aggregate_per_segment(
    template: Template, resources: dict[str, dict[str, Any]], config: VqaConfig
) -> None:
    asl, tokens = _definition(template)
    states = asl["States"]
    assert asl["StartAt"] == "Started?"
    assert states["Started?"]["Choices"][0] == {
        "Variable": "$.info",
        "IsPresent": True,
        "Next": "Next segment?",
    }
    assert states["Started?"]["Default"] == "Start"
    assert states["Start"]["Next"] == "Next segment?"
    # A file's segment goes straight to the detectors; a live one only once it is published.
    assert states["Convert"]["Next"] == "Detect"
    assert states["Convert live"]["Next"] == "Segment ready?"
    convert = _function_by_handler(resources, "lambdas.distributed.convert.handler")
    for name in ("Convert", "Convert live"):
        assert states[name]["Parameters"]["index.$"] == "$.index"
        assert states[name]["Parameters"]["cursor.$"] == "$.cursor"
        assert _token(states[name]["Resource"], tokens) == {"Fn::GetAtt": [convert, "Arn"]}

    detect = states["Detect"]
    assert detect["Type"] == "Parallel"
    assert detect["Next"] == "Aggregate"
    branches = {b["StartAt"]: b["States"][b["StartAt"]] for b in detect["Branches"]}
    assert set(branches) == {f"Detect {name}" for name in config.detectors}
    for name in config.detectors:
        task = branches[f"Detect {name}"]
        # Each branch invokes the function dedicated to that detector.
        assert _token(task["Resource"], tokens) == {
            "Fn::GetAtt": [_function_by_env(resources, DETECTOR=name), "Arn"]
        }
        assert task["Parameters"]["segment.$"] == "$.segment"

    assert states["Aggregate"]["Next"] == "Next segment?"
    assert states["Aggregate"]["Parameters"]["first.$"] == "$$.Execution.Input.index"
    choice = states["Next segment?"]
    assert choice["Type"] == "Choice"
    assert choice["Choices"] == [
        {"Variable": "$.last", "BooleanEquals": True, "Next": "Done"},
        {"Variable": "$.rollover", "BooleanEquals": True, "Next": "Continue"},
        {"Variable": "$.info.live", "BooleanEquals": True, "Next": "Convert live"},
    ]
    assert choice["Default"] == "Convert"
    assert states["Done"]["Type"] == "Succeed"


def test_live_segments_not_yet_published_are_waited_for_by_a_wait_state(
    template: Template, resources: dict[str, dict[str, Any]]
) -> None:
    asl, _ = _definition(template)
    states = asl["States"]
    ready = states["Segment ready?"]
    assert ready["Choices"] == [
        {"Variable": "$.waiting", "BooleanEquals": True, "Next": "Waited long enough?"}
    ]
    assert ready["Default"] == "Detect"
    waited = states["Waited long enough?"]
    assert waited["Choices"] == [
        {"Variable": "$.rollover", "BooleanEquals": True, "Next": "Continue"}
    ]
    assert waited["Default"] == "Wait for segment"
    # The wait is the state machine's (no Lambda busy-waits), as long as Convert says.
    assert states["Wait for segment"] == {
        "Type": "Wait",
        "SecondsPath": "$.wait",
        "Next": "Convert live",
        "Comment": states["Wait for segment"]["Comment"],
    }
    # Waits are counted: an execution hands over after this many (history limit).
    env = resources[_function_by_handler(resources, "lambdas.distributed.convert.handler")][
        "Properties"
    ]["Environment"]["Variables"]
    chunk = int(
        resources[_function_by_handler(resources, "lambdas.distributed.aggregate.handler")][
            "Properties"
        ]["Environment"]["Variables"]["SEGMENTS_PER_EXECUTION"]
    )
    assert int(env["POLLS_PER_EXECUTION"]) == 2 * chunk


def test_each_detector_gets_its_own_thresholds_from_context() -> None:
    ctx = load_context()
    ctx["vqa"] = {**ctx["vqa"], "thresholds": {"black": {"min_duration": 0.5}}}
    stack = DistributedStack(cdk.App(context=ctx), STACK, config=VqaConfig.from_context(ctx["vqa"]))
    resources = Template.from_stack(stack).to_json()["Resources"]
    black = resources[_function_by_env(resources, DETECTOR="black")]
    freeze = resources[_function_by_env(resources, DETECTOR="freeze")]
    variables = black["Properties"]["Environment"]["Variables"]
    assert json.loads(variables["VQA_THRESHOLDS"]) == {"black": {"min_duration": 0.5}}
    variables = freeze["Properties"]["Environment"]["Variables"]
    assert json.loads(variables["VQA_THRESHOLDS"]) == {}


def test_every_lambda_task_retries_transient_errors_with_backoff(template: Template) -> None:
    asl, _ = _definition(template)
    tasks = {k: s for k, s in asl["States"].items() if s["Type"] == "Task"}
    for branch in asl["States"]["Detect"]["Branches"]:
        tasks.update(branch["States"])
    lambda_tasks = {k: t for k, t in tasks.items() if k != "Record failure"}
    assert len(lambda_tasks) >= 10
    for name, task in lambda_tasks.items():
        throttled, retry = task["Retry"]  # the first retrier whose errors match is used
        assert "Lambda.TooManyRequestsException" in throttled["ErrorEquals"], name
        assert "TransientError" in retry["ErrorEquals"], name
        for r in (throttled, retry):
            assert "States.ALL" not in r["ErrorEquals"], name  # bad input is not retried
            assert r["BackoffRate"] >= 2 and r["MaxAttempts"] >= 2, name
            assert r["JitterStrategy"] == "FULL", name


def test_throttling_is_retried_long_enough_to_outlast_a_burst(template: Template) -> None:
    """A burst of streams must not fail executions after three quick retries: throttled tasks
    wait minutes, with capped, jittered backoff."""
    asl, _ = _definition(template)
    tasks = {k: s for k, s in asl["States"].items() if s["Type"] == "Task"}
    for branch in asl["States"]["Detect"]["Branches"]:
        tasks.update(branch["States"])
    tasks.pop("Record failure")
    for name, task in tasks.items():
        throttled = task["Retry"][0]
        assert throttled["ErrorEquals"] == [
            "Lambda.TooManyRequestsException",
            "Lambda.ThrottlingException",
        ], name
        # Nominal waits: interval x rate^n, each capped at MaxDelaySeconds.
        waits = [
            min(
                throttled["IntervalSeconds"] * throttled["BackoffRate"] ** n,
                throttled["MaxDelaySeconds"],
            )
            for n in range(throttled["MaxAttempts"])
        ]
        assert sum(waits) >= 300, (name, waits)  # five minutes of throttling outlasted
        assert throttled["MaxDelaySeconds"] <= 60, name  # no retry sleeps for ages
        assert throttled["JitterStrategy"] == "FULL", name


def test_failures_are_caught_and_recorded_with_the_segment(
    template: Template, resources: dict[str, dict[str, Any]]
) -> None:
    asl, tokens = _definition(template)
    states = asl["States"]
    for name in ("Start", "Convert", "Detect", "Aggregate", "Continue"):
        assert states[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Record failure"}
        ], name
    record = states["Record failure"]
    assert record["Resource"].endswith(":states:::dynamodb:putItem")
    assert _token(record["Parameters"]["TableName"], tokens) == {
        "Ref": next(iter(_of_type(resources, "AWS::DynamoDB::GlobalTable")))
    }
    item = record["Parameters"]["Item"]
    assert item["defect"] == {"S": "#status"}
    assert item["state"] == {"S": "failed"}
    assert item["segment"] == {"S.$": "States.Format('{}', $.index)"}
    assert item["cause"] == {"S.$": "$.error.Cause"}
    assert record["Next"] == "Failed"
    assert states["Failed"]["Type"] == "Fail"


def test_long_streams_hand_over_to_a_fresh_execution(
    template: Template, resources: dict[str, dict[str, Any]], config: VqaConfig
) -> None:
    asl, tokens = _definition(template)
    cont = asl["States"]["Continue"]
    handover = _function_by_handler(resources, "lambdas.distributed.handover.handler")
    assert _token(cont["Resource"], tokens) == {"Fn::GetAtt": [handover, "Arn"]}
    assert cont["Parameters"]["index.$"] == "$.index"
    assert cont["Parameters"]["info.$"] == "$.info"
    # The running state machine, from the context object: its name is generated.
    assert cont["Parameters"]["state_machine.$"] == "$$.StateMachine.Id"
    assert cont["Next"] == "Handed over"
    # It may start executions of this very state machine, and nothing else.
    (machine_id,) = _of_type(resources, "AWS::StepFunctions::StateMachine")
    starts = [
        s
        for s in _statements_by_role_arn(resources, _role_of(resources, handover))
        if "states:StartExecution" in _actions(s)
    ]
    assert [s["Resource"] for s in starts] == [{"Ref": machine_id}]
    assert all(s["Effect"] == "Allow" for s in starts)
    # The aggregate step decides when: after at most this many segments.
    chunk = int(
        resources[_function_by_handler(resources, "lambdas.distributed.aggregate.handler")][
            "Properties"
        ]["Environment"]["Variables"]["SEGMENTS_PER_EXECUTION"]
    )
    assert chunk == segments_per_execution(
        configured=config.segments_per_execution,
        workflow_type=config.workflow_type,
        detectors=len(config.detectors),
    )


@pytest.mark.parametrize("detectors", [1, 3, 6, 10])
def test_a_chunk_stays_under_the_history_limit(detectors: int) -> None:
    chunk = segments_per_execution(configured=10_000, workflow_type="STANDARD", detectors=detectors)
    # Events of one segment: 5 per task (Convert, detectors, Aggregate), 4 for the Parallel,
    # 2 per Choice (Next segment?, and Segment ready? live); doubled to allow one retry of
    # every task. A live execution also makes up to 2 waits per segment, each a Convert (5,
    # doubled), two Choices and the Wait (2 each).
    per_segment = 2 * (5 * (detectors + 2) + 4 + 2 + 2)
    per_wait = 2 * 5 + 3 * 2
    assert chunk * per_segment + 2 * chunk * per_wait + 50 < HISTORY_EVENT_LIMIT
    express = segments_per_execution(configured=10_000, workflow_type="EXPRESS", detectors=6)
    assert express <= EXPRESS_MAX_SEGMENTS


def test_standard_by_default_with_tracing_and_logs(template: Template) -> None:
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineType": "STANDARD",
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": Match.object_like({"Level": "ERROR"}),
        },
    )


def test_express_and_granularity_come_from_context(express_template: Template) -> None:
    template = express_template
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine", {"StateMachineType": "EXPRESS"}
    )
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lambdas.distributed.convert.handler",
            "Architectures": ["arm64"],
            "Environment": {"Variables": Match.object_like({"GRANULARITY": "segment"})},
        },
    )
    chunk = Capture()
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lambdas.distributed.aggregate.handler",
            "Environment": {"Variables": Match.object_like({"SEGMENTS_PER_EXECUTION": chunk})},
        },
    )
    assert int(chunk.as_string()) <= EXPRESS_MAX_SEGMENTS
    template.has_resource_properties(
        "AWS::Lambda::LayerVersion", {"CompatibleArchitectures": ["arm64"]}
    )
    # A live chunk's segments arrive in real time: convert and aggregate hand over after a
    # wall-time budget that leaves room, inside Express's 300 s, for six throttled retries
    # (2 + 4 + 8 + 16 + 32 + 60 s) and the segment under way (30 s).
    for handler in ("convert", "aggregate"):
        budget = Capture()
        template.has_resource_properties(
            "AWS::Lambda::Function",
            {
                "Handler": f"lambdas.distributed.{handler}.handler",
                "Environment": {"Variables": Match.object_like({"MAX_EXECUTION_SECONDS": budget})},
            },
        )
        assert int(budget.as_string()) == 300 - (2 + 4 + 8 + 16 + 32 + 60) - 30


# ---------------------------------------------------------------- buckets


def test_intermediate_bucket_is_private_encrypted_tls_only_and_expires(
    template: Template,
) -> None:
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "LifecycleConfiguration": {
                "Rules": [Match.object_like({"ExpirationInDays": 1, "Status": "Enabled"})]
            },
        },
    )
    # Both buckets (source and intermediate) are private and encrypted.
    template.resource_count_is("AWS::S3::Bucket", 2)
    template.all_resources_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": Match.object_like({"BlockPublicPolicy": True}),
            "BucketEncryption": Match.any_value(),
        },
    )
    policies = template.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 2
    for policy in policies.values():
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
        )


def test_sandbox_buckets_are_destroyed_with_the_stack(
    template: Template, config: VqaConfig
) -> None:
    assert config.destroy_on_delete
    template.all_resources("AWS::S3::Bucket", {"DeletionPolicy": "Delete"})
    template.resource_count_is("Custom::S3AutoDeleteObjects", 2)


# ---------------------------------------------------------------- permissions


def _statements(resources: dict[str, dict[str, Any]], role_id: str) -> list[dict[str, Any]]:
    out = []
    for policy in _of_type(resources, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return out


def _statements_by_role_arn(
    resources: dict[str, dict[str, Any]], role_id: str
) -> list[dict[str, Any]]:
    """Statements of every policy attached to ``role_id``, also those that name the role by
    the name taken from its ARN (a policy kept out of the role's default policy)."""
    out = _statements(resources, role_id)
    for policy in _of_type(resources, "AWS::IAM::Policy").values():
        for role in policy["Properties"]["Roles"]:
            if role != {"Ref": role_id} and json.dumps({"Fn::GetAtt": [role_id, "Arn"]}) in (
                json.dumps(role)
            ):
                out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return out


def _actions(statement: dict[str, Any]) -> list[str]:
    a = statement["Action"]
    return [a] if isinstance(a, str) else list(a)


def test_permissions_are_grants_not_wildcards(resources: dict[str, dict[str, Any]]) -> None:
    # No resource-wide wildcards except the services that have no resource-level permissions.
    unscoped_ok = re.compile(
        r"^(xray:|logs:(CreateLogDelivery|GetLogDelivery|UpdateLogDelivery|"
        r"DeleteLogDelivery|ListLogDeliveries|PutResourcePolicy|"
        r"DescribeResourcePolicies|DescribeLogGroups))"
    )
    for policy in _of_type(resources, "AWS::IAM::Policy").values():
        for s in policy["Properties"]["PolicyDocument"]["Statement"]:
            for action in _actions(s):
                assert action != "*" and not action.endswith(":*"), action
            if s["Resource"] == "*":
                assert all(unscoped_ok.match(a) for a in _actions(s)), s
    assert not _of_type(resources, "AWS::IAM::ManagedPolicy")
    for logical_id, role in _of_type(resources, "AWS::IAM::Role").items():
        # Lambda roles carry no AWS managed policy; only CDK's own auto-delete provider does.
        if logical_id.startswith("CustomS3AutoDeleteObjects"):
            continue
        if role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
            "Service": "lambda.amazonaws.com"
        }:
            assert "ManagedPolicyArns" not in role["Properties"]


def _role_of(resources: dict[str, dict[str, Any]], function_id: str) -> str:
    return str(resources[function_id]["Properties"]["Role"]["Fn::GetAtt"][0])


def test_each_function_gets_only_what_it_needs(resources: dict[str, dict[str, Any]]) -> None:
    intermediate = next(k for k in _of_type(resources, "AWS::S3::Bucket") if "Intermediate" in k)

    def object_resources(statements: list[dict[str, Any]], action: str) -> list[Any]:
        out: list[Any] = []
        for s in statements:
            if action in _actions(s):
                out.extend(s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
        return out

    detect = _statements(
        resources, _role_of(resources, _function_by_env(resources, DETECTOR="freeze"))
    )
    puts = object_resources(detect, "s3:PutObject")
    assert puts == [{"Fn::Join": ["", [{"Fn::GetAtt": [intermediate, "Arn"]}, "/state/*"]]}]
    assert not any(a.startswith(("dynamodb:", "sns:")) for s in detect for a in _actions(s))

    convert = _statements(
        resources,
        _role_of(resources, _function_by_handler(resources, "lambdas.distributed.convert.handler")),
    )
    assert object_resources(convert, "s3:PutObject") == [
        {"Fn::Join": ["", [{"Fn::GetAtt": [intermediate, "Arn"]}, "/segments/*"]]}
    ]
    # It reads the stream status (a live stream's stop request), and writes nothing there.
    table_actions = {a for s in convert for a in _actions(s) if a.startswith("dynamodb:")}
    assert "dynamodb:GetItem" in table_actions
    assert not table_actions & {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
    assert not any(a.startswith("sns:") for s in convert for a in _actions(s))

    aggregate = _statements(
        resources,
        _role_of(
            resources, _function_by_handler(resources, "lambdas.distributed.aggregate.handler")
        ),
    )
    table = next(iter(_of_type(resources, "AWS::DynamoDB::GlobalTable")))
    topic = next(iter(_of_type(resources, "AWS::SNS::Topic")))
    assert {"Ref": topic} in object_resources(aggregate, "sns:Publish")
    assert {"Fn::GetAtt": [table, "Arn"]} in object_resources(aggregate, "dynamodb:PutItem")
    assert not any(a.startswith("s3:") for s in aggregate for a in _actions(s))
    # Alerts for machines: events on the stack's own bus, and no other.
    (bus,) = _of_type(resources, "AWS::Events::EventBus")
    assert object_resources(aggregate, "events:PutEvents") == [{"Fn::GetAtt": [bus, "Arn"]}]


def test_state_machine_may_invoke_exactly_its_functions(
    resources: dict[str, dict[str, Any]],
) -> None:
    (machine,) = _of_type(resources, "AWS::StepFunctions::StateMachine").values()
    role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    invoked = set()
    for s in _statements(resources, role):
        if "lambda:InvokeFunction" in _actions(s):
            for r in s["Resource"]:
                fn = (
                    r["Fn::GetAtt"][0]
                    if "Fn::GetAtt" in r
                    else r["Fn::Join"][1][0]["Fn::GetAtt"][0]
                )
                invoked.add(fn)
    python_functions = {
        k
        for k, r in _of_type(resources, "AWS::Lambda::Function").items()
        if r["Properties"]["Runtime"].startswith("python")
    }
    # Every function but the front door's, which starts executions instead.
    front_door = _function_by_handler(resources, "lambdas.api.handler.handler")
    assert invoked == python_functions - {front_door}


# ---------------------------------------------------------------- functions, tags, outputs


def test_lambda_defaults_are_shared(
    resources: dict[str, dict[str, Any]], config: VqaConfig
) -> None:
    functions = {
        k: r["Properties"]
        for k, r in _of_type(resources, "AWS::Lambda::Function").items()
        if r["Properties"]["Runtime"].startswith("python")
    }
    # start, convert, aggregate, handover, and the front door's api
    assert len(functions) == len(config.detectors) + 5
    (layer,) = _of_type(resources, "AWS::Lambda::LayerVersion")
    for props in functions.values():
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == [config.lambda_architecture]
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["Layers"] == [{"Ref": layer}]
        assert props["LoggingConfig"]["LogFormat"] == "JSON"
    memory = {p["Handler"].split(".")[2]: p["MemorySize"] for p in functions.values()}
    assert memory["convert"] == config.convert_memory_mb
    assert memory["detect"] == config.detector_memory_mb
    for group in _of_type(resources, "AWS::Logs::LogGroup").values():
        assert group["Properties"]["RetentionInDays"] == 7


def test_every_taggable_resource_is_tagged_with_the_architecture(
    resources: dict[str, dict[str, Any]],
) -> None:
    tagged_types = {
        "AWS::S3::Bucket",
        "AWS::Lambda::Function",
        "AWS::IAM::Role",
        "AWS::Logs::LogGroup",
        "AWS::SNS::Topic",
        "AWS::StepFunctions::StateMachine",
    }
    seen = set()
    for logical_id, r in resources.items():
        props = r.get("Properties", {})
        if r["Type"] in tagged_types:
            seen.add(r["Type"])
            assert TAG in props.get("Tags", []), logical_id
        elif isinstance(props.get("Tags"), list):
            assert TAG in props["Tags"], logical_id
    assert seen == tagged_types
    (table,) = _of_type(resources, "AWS::DynamoDB::GlobalTable").values()
    for replica in table["Properties"]["Replicas"]:
        assert TAG in replica["Tags"]


def test_outputs_tell_a_client_how_to_run_and_read_results(template: Template) -> None:
    outputs = template.to_json()["Outputs"]
    for name in ("StateMachineArn", "SourceBucket", "ResultsTable", "AlertsTopic"):
        assert name in outputs, name
    assert outputs["StateMachineArn"]["Value"] == {
        "Ref": next(iter(template.find_resources("AWS::StepFunctions::StateMachine")))
    }


# ---------------------------------------------------------------- packaging


def test_function_package_fits_lambdas_unzipped_limit(
    cloud_assembly: Any, resources: dict[str, dict[str, Any]]
) -> None:
    outdir = Path(cloud_assembly.directory)
    (layer,) = _of_type(resources, "AWS::Lambda::LayerVersion").values()
    layer_dir = outdir / f"asset.{layer['Properties']['Content']['S3Key'].removesuffix('.zip')}"
    fn = resources[_function_by_env(resources, DETECTOR="freeze")]["Properties"]
    code_dir = outdir / f"asset.{fn['Code']['S3Key'].removesuffix('.zip')}"

    # The layer holds Linux cp312 wheels for the configured architecture, not this machine's.
    for package, abi in (("numpy", "cp312-cp312"), ("av", "abi3")):
        wheel = next((layer_dir / "python").glob(f"{package}-*.dist-info")) / "WHEEL"
        tags = wheel.read_text()
        assert abi in tags and "manylinux" in tags and "x86_64" in tags, (package, tags)
    assert (layer_dir / "python" / "numpy" / "__init__.py").is_file()
    assert (code_dir / "lambdas" / "distributed" / "detect.py").is_file()
    assert (code_dir / "vqa" / "segment.py").is_file()
    assert not (code_dir / "vqa" / "local").exists()

    size = tree_size(layer_dir) + tree_size(code_dir)
    assert size < LAMBDA_UNZIPPED_LIMIT, f"{size / 2**20:.0f} MB"


# ---------------------------------------------------------------- lint and cdk-nag


def test_cfn_lint_reports_no_errors(template_files: dict[str, Path]) -> None:
    from cfnlint.api import lint_all

    matches = lint_all(template_files[STACK].read_text())
    errors = [f"{m.rule.id} {m.message}" for m in matches if m.rule.severity == "error"]
    assert not errors, "\n".join(errors)


def test_cdk_nag_aws_solutions_passes_with_reasoned_acknowledgements(tmp_path: Path) -> None:
    from cdk_nag import AwsSolutionsChecks

    ctx = load_context()
    ctx["aws:cdk:bundling-stacks"] = []
    app = cdk.App(context=ctx, outdir=str(tmp_path))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    DistributedStack(app, STACK, config=VqaConfig.from_context(ctx["vqa"]))
    app.synth()  # raises ValidationFailed on any unacknowledged finding

    report = json.loads((tmp_path / "validation-report.json").read_text())
    for plugin in report["pluginReports"]:
        assert not plugin.get("violations"), plugin["violations"]
    metadata = json.loads((tmp_path / f"{STACK}.metadata.json").read_text())
    acknowledged = {
        rule: reason
        for entries in metadata.values()
        for e in entries
        if e["type"] == "aws:cdk:acknowledged-rules"
        for rule, reason in e["data"].items()
    }
    assert any("AwsSolutions-IAM5" in r for r in acknowledged)
    for rule, reason in acknowledged.items():
        assert len(reason.split()) >= 8, f"{rule}: acknowledgement needs a real reason"
