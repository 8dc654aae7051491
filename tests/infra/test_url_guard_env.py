"""The SSRF guard is on wherever a deployed service fetches a user-supplied URL.

Distributed: the Start function (it probes the source) and the Convert function (it reads the
playlist and every segment); monolith: every shard's task container. Each carries
``VQA_URL_GUARD=1`` and ``cdk.json``'s ``allowed_origins`` as ``VQA_ALLOWED_ORIGINS``, under the
names :mod:`vqa.urlguard` reads. That the emulated services then refuse a private target is in
tests/test_urlguard.py.
"""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Template

from tests.infra.conftest import EXPRESS_VARIANT
from vqa.urlguard import ENV_ALLOWED, ENV_ENABLED

#: The distributed functions that fetch sources, by handler.
FETCHING_HANDLERS = ("lambdas.distributed.start.handler", "lambdas.distributed.convert.handler")


def _config_origins(variant: dict[str, Any] | None = None) -> str:
    from stacks import load_context
    from stacks.config import VqaConfig

    ctx = {**load_context()["vqa"], **(variant or {})}
    return ",".join(VqaConfig.from_context(ctx).allowed_origins)


def _function_env(template: Template, handler: str) -> dict[str, Any]:
    found = template.find_resources("AWS::Lambda::Function", {"Properties": {"Handler": handler}})
    assert len(found) == 1, (handler, sorted(found))
    return dict(next(iter(found.values()))["Properties"]["Environment"]["Variables"])


def test_distributed_fetching_functions_run_with_the_guard_on(
    templates: dict[str, Template],
) -> None:
    t = templates["VqaDistributed"]
    for handler in FETCHING_HANDLERS:
        env = _function_env(t, handler)
        assert env[ENV_ENABLED] == "1", handler
        assert env[ENV_ALLOWED] == _config_origins(), handler
    # The detectors read the intermediate bucket only: no URL of the user's reaches them.
    detect = t.find_resources(
        "AWS::Lambda::Function",
        {"Properties": {"Handler": "lambdas.distributed.detect.handler"}},
    )
    assert detect
    for fn in detect.values():
        assert ENV_ENABLED not in fn["Properties"]["Environment"]["Variables"]


def test_the_allow_list_reaches_the_functions_from_the_config(
    express_template: Template,
) -> None:
    """A non-empty ``allowed_origins`` (the variant's) arrives as given, in order."""
    expected = _config_origins(EXPRESS_VARIANT)
    assert expected.count(",") >= 1  # the variant lists several origins
    for handler in FETCHING_HANDLERS:
        env = _function_env(express_template, handler)
        assert env[ENV_ENABLED] == "1"
        assert env[ENV_ALLOWED] == expected


def test_every_monolith_task_runs_with_the_guard_on(templates: dict[str, Template]) -> None:
    tasks = templates["VqaMonolith"].find_resources("AWS::ECS::TaskDefinition")
    assert tasks
    for logical, task in tasks.items():
        (container,) = task["Properties"]["ContainerDefinitions"]
        env = {e["Name"]: e["Value"] for e in container["Environment"]}
        assert env[ENV_ENABLED] == "1", logical
        assert env[ENV_ALLOWED] == _config_origins(), logical
