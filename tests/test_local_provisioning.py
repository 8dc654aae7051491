"""The emulations are provisioned from the synthesized templates: no constant copied."""

from __future__ import annotations

import ast
from pathlib import Path

from vqa.local.template import MONOLITH_STACK, synth_template

ROOT = Path(__file__).resolve().parents[1]
#: One shard with every detector: the configuration tests/test_worker.py deploys too (one synth).
ALL = ["black", "freeze", "corruption", "silence", "clipping", "av_sync"]


def _stack_constants() -> set[str]:
    """Module-level UPPER_CASE names assigned in stacks/ (the stacks' own facts)."""
    names: set[str] = set()
    for path in (ROOT / "stacks").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else ([node.target] if isinstance(node, ast.AnnAssign) else [])
            )
            names |= {t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()}
    return names - {"ROOT", "ARCHITECTURE"}


def test_no_stack_constant_is_restated_in_the_emulation() -> None:
    constants = _stack_constants()
    assert {"MAX_RECEIVES", "VISIBILITY_SECONDS", "CHECKPOINT_EVERY"} <= constants
    restated = {}
    for path in (ROOT / "vqa" / "local").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            stored = isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
            if stored and node.id in constants:  # type: ignore[attr-defined]
                restated[node.id] = path.name  # type: ignore[attr-defined]
    assert restated == {}


def test_queues_functions_and_tasks_follow_the_template() -> None:
    from vqa.local.monolith import create_emulation

    template = synth_template(MONOLITH_STACK, vqa_context={"shards": [ALL]})
    jobs = [
        k
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in r["Properties"]
    ]
    for logical_id in jobs:  # a stack change the emulation has never heard of
        props = template["Resources"][logical_id]["Properties"]
        props["VisibilityTimeout"] = 77
        props["RedrivePolicy"]["maxReceiveCount"] = 5
    emu = create_emulation(template=template)
    sqs = emu.client("sqs")
    for shard in emu.shards:
        attrs = sqs.get_queue_attributes(QueueUrl=shard.queue_url, AttributeNames=["All"])[
            "Attributes"
        ]
        assert attrs["VisibilityTimeout"] == "77"
        assert '"maxReceiveCount": 5' in attrs["RedrivePolicy"]
        assert shard.dlq_url.rsplit("/", 1)[-1] in attrs["RedrivePolicy"]
        env = emu.worker_env(shard)
        assert env["VQA_DETECTORS"] == ",".join(ALL)
        assert env["VQA_QUEUE_URL"] == shard.queue_url
        assert env["AWS_ENDPOINT_URL"] == emu.endpoint
        task = emu.client("ecs").describe_task_definition(taskDefinition=shard.container.family)
        (container,) = task["taskDefinition"]["containerDefinitions"]
        cfn = template["Resources"][shard.container.task_logical_id]["Properties"]
        assert container["cpu"] == cfn["ContainerDefinitions"][0]["Cpu"] == shard.container.cpu
        assert {e["name"]: e["value"] for e in container["environment"]} == (
            shard.container.environment
        )
    assert [s.name for s in emu.shards] == ["shard0"]
    assert emu.usage_config()["shards"] == [ALL]
    fn = template["Resources"][emu.orchestrator.logical_id]["Properties"]
    assert emu.orchestrator.memory_mb == fn["MemorySize"]
    assert emu.orchestrator.environment["VQA_TABLE"] == emu.table
    keys = emu.client("dynamodb").describe_table(TableName=emu.table)["Table"]["KeySchema"]
    assert [k["AttributeName"] for k in keys] == ["stream", "defect"]


def test_one_status_key_for_both_architectures() -> None:
    """The distributed state machine records failures on the same status item the handlers,
    the orchestrator and the workers use (vqa.results.STATUS_KEY)."""
    import json

    from vqa.local.template import DISTRIBUTED_STACK, state_machine
    from vqa.results import STATUS_KEY

    _, props = state_machine(synth_template(DISTRIBUTED_STACK))
    raw = props["DefinitionString"]  # a string, or an Fn::Join around the functions' ARNs
    parts = [raw] if isinstance(raw, str) else raw["Fn::Join"][1]
    text = "".join(p for p in parts if isinstance(p, str))
    assert json.dumps({"S": STATUS_KEY}).replace(" ", "") in text
