"""The front door in both stacks: a function URL with AWS_IAM auth over lambdas/api/handler.py,
started the one way each architecture starts a stream, with grants and nothing more.

cdk-nag and cfn-lint run over the full templates in test_*_stack.py / test_scanners.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Capture, Match, Template

from stacks.constructs.front_door import HANDLER
from stacks.constructs.orchestrator import HANDLER as ORCHESTRATOR_HANDLER

STACKS = ("VqaDistributed", "VqaMonolith")


def _api_function(template: Template) -> tuple[str, dict[str, Any]]:
    found = template.find_resources("AWS::Lambda::Function", {"Properties": {"Handler": HANDLER}})
    assert len(found) == 1, sorted(found)
    logical, resource = next(iter(found.items()))
    return logical, dict(resource)


def _role_statements(template: Template, fn: dict[str, Any]) -> list[dict[str, Any]]:
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = template.find_resources(
        "AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": role}]}}
    )
    return [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _actions(statement: dict[str, Any]) -> list[str]:
    a = statement["Action"]
    return [a] if isinstance(a, str) else list(a)


@pytest.mark.parametrize("stack", STACKS)
def test_a_function_url_with_iam_auth_and_the_api_url_output(
    templates: dict[str, Template], stack: str
) -> None:
    t = templates[stack]
    logical, _ = _api_function(t)
    t.resource_count_is("AWS::Lambda::Url", 1)
    t.has_resource_properties(
        "AWS::Lambda::Url",
        {"AuthType": "AWS_IAM", "TargetFunctionArn": {"Fn::GetAtt": [logical, "Arn"]}},
    )
    url = t.find_resources("AWS::Lambda::Url")
    t.has_output("ApiUrl", {"Value": {"Fn::GetAtt": [next(iter(url)), "FunctionUrl"]}})
    # Nobody is let in without a signature: no public invoke permission on the function.
    for perm in t.find_resources("AWS::Lambda::Permission").values():
        props = perm["Properties"]
        assert not (props.get("Principal") == "*" and props.get("FunctionUrlAuthType") == "NONE")


def test_distributed_starts_the_state_machine(templates: dict[str, Template]) -> None:
    t = templates["VqaDistributed"]
    _, fn = _api_function(t)
    machine = Capture()
    t.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": HANDLER,
            "Environment": {
                "Variables": Match.object_like(
                    {"VQA_ARCHITECTURE": "distributed", "VQA_STATE_MACHINE_ARN": {"Ref": machine}}
                )
            },
        },
    )
    assert t.to_json()["Resources"][machine.as_string()]["Type"] == (
        "AWS::StepFunctions::StateMachine"
    )
    statements = _role_statements(t, fn)
    start = [s for s in statements if "states:StartExecution" in _actions(s)]
    assert len(start) == 1 and start[0]["Resource"] == {"Ref": machine.as_string()}
    assert not any(a.startswith("lambda:") for s in statements for a in _actions(s))


def test_monolith_invokes_the_orchestrator(templates: dict[str, Template]) -> None:
    t = templates["VqaMonolith"]
    _, fn = _api_function(t)
    orchestrator = Capture()
    t.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": HANDLER,
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "VQA_ARCHITECTURE": "monolith",
                        "VQA_ORCHESTRATOR_FUNCTION": {"Ref": orchestrator},
                    }
                )
            },
        },
    )
    target = t.to_json()["Resources"][orchestrator.as_string()]
    assert target["Properties"]["Handler"] == ORCHESTRATOR_HANDLER
    statements = _role_statements(t, fn)
    invoke = [s for s in statements if "lambda:InvokeFunction" in _actions(s)]
    # The orchestrator's latest version, not "<arn>:*" (every version and alias).
    arn = {"Fn::GetAtt": [orchestrator.as_string(), "Arn"]}
    latest = {"Fn::Join": ["", [arn, ":$LATEST"]]}
    assert [s["Resource"] for s in invoke] == [[arn, latest]]
    assert not any(a.startswith("states:") for s in statements for a in _actions(s))


@pytest.mark.parametrize("stack", STACKS)
def test_grants_are_the_table_and_the_starter_only(
    templates: dict[str, Template], stack: str
) -> None:
    t = templates[stack]
    _, fn = _api_function(t)
    env = fn["Properties"]["Environment"]["Variables"]
    table = env["VQA_TABLE"]["Ref"]
    assert t.to_json()["Resources"][table]["Type"] == "AWS::DynamoDB::GlobalTable"
    for s in _role_statements(t, fn):
        for action in _actions(s):
            assert action != "*" and not action.endswith(":*"), s
            service = action.split(":")[0]
            assert service in ("dynamodb", "states", "lambda", "logs", "xray"), s
            if service == "dynamodb":
                assert table in str(s["Resource"]), s


@pytest.mark.parametrize("stack", STACKS)
def test_the_deployed_detectors_and_allow_list_come_from_the_config(
    templates: dict[str, Template], stack: str
) -> None:
    from stacks import load_context
    from stacks.config import VqaConfig

    config = VqaConfig.from_context(load_context()["vqa"])
    _, fn = _api_function(templates[stack])
    env = fn["Properties"]["Environment"]["Variables"]
    deployed = (
        config.detectors if stack == "VqaDistributed" else [d for s in config.shards for d in s]
    )
    assert env["VQA_DETECTORS"].split(",") == list(deployed)
    assert env["VQA_ALLOWED_ORIGINS"] == ",".join(config.allowed_origins)
    assert env["VQA_URL_GUARD"] == "1"
