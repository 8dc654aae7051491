"""Local IAM: the emulations hold every call to the policies the template gives its role."""

from __future__ import annotations

import json
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from vqa.local import iam
from vqa.local.template import DISTRIBUTED_STACK, MONOLITH_STACK, synth_template


def _strip(template: dict[str, Any], role_hint: str, action_prefix: str) -> str:
    """Remove every statement granting ``action_prefix*`` from the policies of the role whose
    logical id contains ``role_hint``; returns that role's logical id."""
    roles = [
        k
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Role" and role_hint in k
    ]
    assert len(roles) == 1, roles
    (role,) = roles
    removed = 0
    for res in template["Resources"].values():
        if res["Type"] != "AWS::IAM::Policy" or {"Ref": role} not in res["Properties"]["Roles"]:
            continue
        doc = res["Properties"]["PolicyDocument"]
        keep = []
        for st in doc["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if any(a.startswith(action_prefix) for a in actions):
                removed += 1
            else:
                keep.append(st)
        doc["Statement"] = keep
    assert removed, f"no {action_prefix} grant on {role}"
    return role


def _account(**kw: Any) -> iam.Account:
    return iam.Account(region="us-east-1", account="123456789012", **kw)


def _principal(statements: list[dict[str, Any]], account: iam.Account) -> iam.Principal:
    return iam.Principal("r", "arn:aws:iam::123456789012:role/r", statements, account)


# ---- the evaluation logic ------------------------------------------------------------------------


def test_wildcards_prefixes_and_explicit_deny() -> None:
    acc = _account()
    allow = {"Effect": "Allow", "Action": "s3:GetObject*", "Resource": "arn:aws:s3:::b/state/*"}
    p = _principal([allow], acc)
    assert iam.evaluate(p, "s3:GetObject", "arn:aws:s3:::b/state/x.json")[0]
    assert not iam.evaluate(p, "s3:GetObject", "arn:aws:s3:::b/segments/x")[0]
    assert not iam.evaluate(p, "s3:PutObject", "arn:aws:s3:::b/state/x.json")[0]
    deny = {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}
    assert not iam.evaluate(
        _principal([allow, deny], acc), "s3:GetObject", "arn:aws:s3:::b/state/x.json"
    )[0]


def test_tls_only_resource_policy_denies_nothing_and_cmk_needs_the_kms_grant() -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/k1"
    topic = "arn:aws:sns:us-east-1:123456789012:t"
    acc = _account(
        resource_policies={
            topic: [
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "sns:Publish",
                    "Resource": topic,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ]
        },
        encryption={topic: key},
        key_policies={
            key: [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ]
        },
    )
    publish = {"Effect": "Allow", "Action": "sns:Publish", "Resource": topic}
    needs = iam.required("sns", "Publish", {"TopicArn": topic}, acc)
    assert ("kms:GenerateDataKey", key) in needs and ("kms:Decrypt", key) in needs
    p = _principal([publish], acc)
    with pytest.raises(Exception, match="kms:GenerateDataKey"):
        p.authorize("sns", "Publish", {"TopicArn": topic})
    kms = {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": key}
    _principal([publish, kms], acc).authorize("sns", "Publish", {"TopicArn": topic})


# ---- a missing grant fails the run, naming role, action and resource -----------------------------


def test_distributed_run_without_the_detectors_read_grant_fails(corpus: Any) -> None:
    from vqa.local.distributed import run_local

    template = synth_template(DISTRIBUTED_STACK)
    role = _strip(template, "DetectBlackRole", "s3:GetObject")
    with pytest.raises(iam.IamDenied) as err:
        run_local(str(corpus.path("truncated.ts")), template=template)
    message = str(err.value)
    assert role in message and "s3:GetObject" in message and "segments/" in message


def test_state_machine_role_is_held_to_its_invoke_grant(corpus: Any) -> None:
    from vqa.local.distributed import run_local

    template = synth_template(DISTRIBUTED_STACK)
    role = _strip(template, "StateMachineRole", "lambda:InvokeFunction")
    with pytest.raises(iam.IamDenied) as err:
        run_local(str(corpus.path("truncated.ts")), template=template)
    message = str(err.value)
    assert role in message and "lambda:InvokeFunction" in message and ":function:" in message


@pytest.mark.parametrize(
    ("role_hint", "grant", "resource"),
    [
        ("shard1TaskTaskRole", "dynamodb:", ":table/"),  # the audio shard's status writes
        ("shard0TaskTaskRole", "kms:", ":key/"),  # alerts to the topic's customer-managed key
        ("shard0TaskTaskRole", "events:", ":event-bus/"),  # alerts to the bus (vqa.alerts)
    ],
    ids=["table-write", "topic-key", "alerts-bus"],
)
def test_monolith_run_without_a_workers_grant_fails(
    corpus: Any, role_hint: str, grant: str, resource: str
) -> None:
    from vqa.local.monolith import run_local

    assert corpus.clip("truncated.ts")["defects"], "an alert is published"
    template = synth_template(MONOLITH_STACK)
    role = _strip(template, role_hint, grant)
    with pytest.raises(iam.IamDenied) as err:
        run_local(str(corpus.path("truncated.ts")), template=template)
    message = str(err.value)
    assert role in message and grant in message and resource in message


def test_orchestrator_is_held_to_its_function_role() -> None:
    from vqa.local.monolith import create_emulation, invoke_orchestrator
    from vqa.meter import Meter

    template = synth_template(MONOLITH_STACK)
    _drop_action(template, "FunctionsOrchestratorRole", "sqs:SendMessage")
    emu = create_emulation(template=template)
    emu.client("s3").put_object(Bucket=emu.source_bucket, Key="a.mp4", Body=b"x")
    event = {"stream": "s", "source": f"s3://{emu.source_bucket}/a.mp4"}
    with pytest.raises(Exception, match="AccessDenied"):
        invoke_orchestrator(emu, event, Meter())
    (denial,) = emu.ledger.denials
    assert denial.action == "sqs:SendMessage" and "Shardshard0Jobs" in denial.resource
    assert denial.role == emu.deployment.role_names[emu.orchestrator.role]


def test_task_protection_goes_through_the_agent_and_needs_its_grant(corpus: Any) -> None:
    """The worker protects its task through $ECS_AGENT_URI; the agent makes that call with the
    task role, which needs ecs:UpdateTaskProtection on the task."""
    from vqa.local.monolith import run_local

    template = synth_template(MONOLITH_STACK)
    role = _strip(template, "shard0TaskTaskRole", "ecs:UpdateTaskProtection")
    with pytest.raises(iam.IamDenied) as err:
        run_local(str(corpus.path("truncated.ts")), template=template)
    assert role in str(err.value) and "ecs:UpdateTaskProtection" in str(err.value)
    assert ":task/" in str(err.value)


def _drop_action(template: dict[str, Any], role_hint: str, action: str) -> None:
    """Remove one action from the statements of the role whose logical id has ``role_hint``."""
    dropped = 0
    for res in template["Resources"].values():
        roles = res.get("Properties", {}).get("Roles", [])
        if res["Type"] != "AWS::IAM::Policy" or not any(role_hint in r["Ref"] for r in roles):
            continue
        for st in res["Properties"]["PolicyDocument"]["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if action in actions:
                st["Action"] = [a for a in actions if a != action]
                dropped += 1
    assert dropped, f"{role_hint} has no {action}"


@pytest.mark.parametrize("granted", [True, False], ids=["stack", "consume-only"])
def test_hand_back_needs_the_send_grant(granted: bool) -> None:
    """A stopped worker hands its job back with SendMessage: with only grant_consume_messages
    (the stack before issue 9) the task role is denied exactly that call."""
    from vqa.local.monolith import create_emulation
    from vqa.meter import Meter
    from vqa.worker import Clients, Worker, WorkerSettings

    template = synth_template(MONOLITH_STACK)
    if not granted:
        _drop_action(template, "shard0TaskTaskRole", "sqs:SendMessage")
    emu = create_emulation(template=template)
    shard = emu.shards[0]
    sqs = emu.client("sqs")
    sqs.send_message(QueueUrl=shard.queue_url, MessageBody=json.dumps({"stream": "s"}))
    meter = Meter()
    worker = Worker(
        WorkerSettings.from_env(emu.worker_env(shard)),
        Clients(*(emu.client(s, meter) for s in ("sqs", "dynamodb", "s3", "sns"))),
    )
    principal = emu.deployment.principal(shard.container.task_role)
    iam.install()
    with iam.acting_as(principal):
        (message,) = sqs.receive_message(QueueUrl=shard.queue_url)["Messages"]
        worker.stop()  # SIGTERM arrived while the job was being received
        if granted:
            worker.handle(message)
        else:
            with pytest.raises(Exception, match="AccessDenied"):
                worker.handle(message)
    if granted:
        assert principal.ledger.denials == []
        (copy,) = sqs.receive_message(QueueUrl=shard.queue_url)["Messages"]
        assert copy["Body"] == message["Body"] and copy["MessageId"] != message["MessageId"]
    else:
        (denial,) = principal.ledger.denials
        assert denial.role == emu.deployment.role_names[shard.container.task_role]
        assert denial.action == "sqs:SendMessage"
        assert denial.resource.endswith(shard.queue_url.rsplit("/", 1)[-1])


# ---- full runs need no call their roles lack -----------------------------------------------------


def test_monolith_sigterm_hand_back_resume_and_dlq_need_no_missing_grant(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """SIGTERM mid-job hands the job back (SQS SendMessage: the grant issue 9 names), a second
    task resumes from the checkpoint, and a poison job is dead-lettered: no call is denied
    (finish_worker raises IamDenied otherwise)."""
    from vqa.corpus import write_sample_clip
    from vqa.local.monolith import create_emulation, ecs_agent, finish_worker, start_worker
    from vqa.meter import Meter
    from vqa.results import get_status, put_status

    clip = tmp_path_factory.mktemp("iam") / "long.mp4"
    write_sample_clip(clip, seconds=30.0, width=160, height=96)
    # One shard with every detector: the configuration tests/test_worker.py deploys (one synth).
    every = ["black", "freeze", "corruption", "silence", "clipping", "av_sync"]
    emu = create_emulation({"shards": [every]})
    shard = emu.shards[0]
    s3, sqs = emu.client("s3"), emu.client("sqs")
    s3.put_object(Bucket=emu.source_bucket, Key="long.mp4", Body=clip.read_bytes())
    s3.put_object(Bucket=emu.source_bucket, Key="bad.mp4", Body=b"not media" * 100)
    for stream, key in (("good", "long.mp4"), ("poison", "bad.mp4")):
        put_status(
            dynamodb=emu.client("dynamodb"),
            table=emu.table,
            stream=stream,
            state="running",
            shards=[shard.name],
        )
        sqs.send_message(
            QueueUrl=shard.queue_url,
            MessageBody=json.dumps(
                {"stream": stream, "source": f"s3://{emu.source_bucket}/{key}", "shard": shard.name}
            ),
        )
    checkpointed = threading.Event()

    def on_line(_wp: Any, line: str) -> None:
        if '"checkpoint"' in line:
            checkpointed.set()

    meter = Meter()
    with tempfile.TemporaryDirectory() as tmp:
        first = start_worker(
            emu,
            shard,
            Path(tmp),
            on_line=on_line,
            extra_args=["--checkpoint-every", "2", "--retry-delay-cap", "0"],
        )
        assert checkpointed.wait(120), "".join(first.lines[-5:])
        first.proc.send_signal(signal.SIGTERM)
        finish_worker(first, meter)
        assert any("handed back" in ln for ln in first.lines), first.lines[-5:]
        second = start_worker(
            emu, shard, Path(tmp), drain=True, extra_args=["--retry-delay-cap", "0"]
        )
        finish_worker(second, meter)
        assert any("resuming from checkpoint" in ln for ln in second.lines)
    # Task protection went through the agent, checked against the task role, and was released.
    assert ecs_agent().protected[second.task_arn.rsplit("/", 1)[-1]] is False
    ddb = emu.client("dynamodb")
    assert (get_status(dynamodb=ddb, table=emu.table, stream="good") or {})["state"] == "done"
    assert (get_status(dynamodb=ddb, table=emu.table, stream="poison") or {})["state"] == "failed"
    dead = sqs.receive_message(QueueUrl=shard.dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["stream"] for m in dead] == ["poison"]
