"""The experiment: both architectures and the variants, per the experiment --json contract."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.test_cost import distributed_usage, monolith_usage
from vqa.cost import lambda_functions
from vqa.errors import ConfigError
from vqa.experiment import VARIANT_GRID, run_experiment, truth_path
from vqa.pricing import load_prices


class FakeRunners:
    """Stand-ins with the runners' signatures, returning hand-made usage; they record calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def distributed(
        self,
        source: str,
        *,
        granularity: str | None = None,
        workflow_type: str | None = None,
        progress: bool = False,
        config: Any = None,
    ) -> dict[str, Any]:
        self.calls.append(
            ("distributed", source, {"granularity": granularity, "workflow_type": workflow_type})
        )
        usage = distributed_usage(
            workflow=workflow_type or "STANDARD", granularity=granularity or "frame"
        )
        return {"source": source, "duration": 10.0, "defects": self._defects(), "usage": usage}

    def monolith(
        self, source: str, *, progress: bool = False, config: Any = None
    ) -> dict[str, Any]:
        self.calls.append(("monolith", source, {}))
        return {
            "source": source,
            "duration": 10.0,
            "defects": self._defects(),
            "usage": monolith_usage(),
        }

    @staticmethod
    def _defects() -> list[dict[str, Any]]:
        return [{"kind": "black", "start": 1.0, "end": 2.5}]

    def mapping(self) -> dict[str, Any]:
        return {"distributed": self.distributed, "monolith": self.monolith}


def _check_contract(report: dict[str, Any]) -> None:
    assert set(report["architectures"]) == {"distributed", "monolith"}
    for arch in report["architectures"].values():
        assert isinstance(arch["usd_per_stream_hour"], float)
        assert arch["usd_per_stream_hour"] > 0
        assert all(isinstance(v, float) for v in arch["breakdown"].values())
        assert sum(arch["breakdown"].values()) == pytest.approx(arch["usd_per_stream_hour"])
        assert {"requests", "counters", "bytes", "stream_seconds"} <= set(arch["usage"])
    d = report["architectures"]["distributed"]["usd_per_stream_hour"]
    m = report["architectures"]["monolith"]["usd_per_stream_hour"]
    assert report["reduction"] == pytest.approx(1 - m / d)
    assert {"region", "as_of"} <= set(report["prices"])
    placement = report["architectures"]["monolith"]["placement"]
    assert isinstance(placement["instance_type"], str)
    assert set(placement["instances"]) == {"1", "100", "1000"}
    for task in placement["tasks"]:
        assert {"shard", "cpu_units", "memory_mb", "streams_per_task"} <= set(task)
    for key in ("variants", "projection", "quotas", "sources"):
        assert report[key], key
    json.dumps(report)


def test_experiment_with_fake_runners(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fakes = FakeRunners()
    report = run_experiment(
        ["a.mp4", "b.mp4"], out_dir=tmp_path, progress=False, runners=fakes.mapping()
    )
    _check_contract(report)
    # Baseline + monolith + the three other cells of the Standard/Express x frame/segment grid.
    assert len(fakes.calls) == 2 * (2 + len(VARIANT_GRID) - 1)
    variant_kwargs = {
        (c[2]["workflow_type"], c[2]["granularity"])
        for c in fakes.calls
        if c[0] == "distributed" and c[2]["workflow_type"]
    }
    assert variant_kwargs == set(VARIANT_GRID) - {("STANDARD", "frame")}
    cells = {
        (v["workflow_type"], v["granularity"])
        for v in report["variants"]
        if v["architecture"] == "distributed"
    }
    assert cells == set(VARIANT_GRID)
    assert [v["architecture"] for v in report["variants"]].count("monolith") == 1
    # Two 10 s sources: usage is summed, cost per stream-hour unchanged.
    assert report["architectures"]["distributed"]["usage"]["stream_seconds"] == 20.0
    assert [s["source"] for s in report["sources"]] == ["a.mp4", "b.mp4"]
    assert all(s["agree"] for s in report["sources"])
    # The hand-made usage has no per-shard CPU: the monolith is placed with the task sizes
    # cdk.json deploys, read from the synthesized template.
    from vqa import deployment

    template = deployment.synth(deployment.MONOLITH_STACK)
    sizes = sorted(
        (c["Cpu"], c["MemoryReservation"])
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ECS::TaskDefinition"
        for c in r["Properties"]["ContainerDefinitions"]
    )
    placement = report["architectures"]["monolith"]["placement"]
    assert sorted((t["cpu_units"], t["memory_mb"]) for t in placement["tasks"]) == sizes
    assert report["right_sizing"] == {}
    # Without --json's stdout, the headline goes to stderr and stdout stays clean.
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "per stream-hour" in captured.err and "report.md" in captured.err
    for name in ("report.md", "report.json", "cost_by_service.png", "cost_vs_streams.png"):
        assert (tmp_path / name).exists()


def test_progress_mode_prints_headline_to_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_experiment(
        ["a.mp4"], out_dir=tmp_path, progress=True, variants=False, runners=FakeRunners().mapping()
    )
    out = capsys.readouterr().out
    assert report["headline"] in out
    assert str(tmp_path / "report.md") in out
    assert len(report["variants"]) == 2


def test_disagreeing_architectures_are_reported(tmp_path: Path) -> None:
    fakes = FakeRunners()

    def lossy_monolith(source: str, **kw: Any) -> dict[str, Any]:
        out = fakes.monolith(source, **kw)
        out["defects"] = []
        return out

    report = run_experiment(
        ["a.mp4"],
        out_dir=tmp_path,
        progress=False,
        variants=False,
        runners={"distributed": fakes.distributed, "monolith": lossy_monolith},
    )
    assert report["sources"][0]["agree"] is False
    assert "| NO |" in (tmp_path / "report.md").read_text()


def test_cost_explorer_needs_aws(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--cost-explorer needs --aws"):
        run_experiment(
            ["a.mp4"],
            out_dir=tmp_path,
            cost_explorer=["2026-11-01", "2026-11-02"],
            progress=False,
            runners=FakeRunners().mapping(),
        )


# --- the real local runners ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vqa.corpus import write_sample_clip

    path = tmp_path_factory.mktemp("clip") / "small.mp4"
    entry = write_sample_clip(path, seconds=4.0, width=160, height=96)
    truth_path(path).write_text(json.dumps(entry))
    return path


@pytest.mark.slow
def test_experiment_with_the_real_local_runners(
    small_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both emulated architectures on one small clip (the baseline only: the variants' plumbing
    is covered above, and each extra distributed run costs a synth and a run)."""
    report = run_experiment([str(small_clip)], out_dir=tmp_path, progress=False, variants=False)
    _check_contract(report)
    d = report["architectures"]["distributed"]
    m = report["architectures"]["monolith"]
    # Measured, not typed: the counters the runners metered drive the figures.
    assert d["usage"]["counters"]["state_transitions"] > 0
    assert d["usage"]["requests"]["s3"]["PutObject"] > 0
    assert m["usage"]["counters"]["worker_cpu_seconds"] > 0
    assert m["breakdown"]["ec2"] > 0 and d["breakdown"]["ec2"] == 0
    assert d["breakdown"]["stepfunctions"] > 0 and m["breakdown"]["stepfunctions"] == 0
    # The report's quantities are the meter's: transitions and S3 PUTs as counted.
    lines = {li["item"]: li for li in d["line_items"]}
    assert lines["state transitions"]["quantity"] == d["usage"]["counters"]["state_transitions"]
    assert lines["S3 PUT/COPY/POST/LIST requests"]["quantity"] == sum(
        n for op, n in d["usage"]["requests"]["s3"].items() if op in ("PutObject", "CopyObject")
    )
    # Lambda: each function's metered seconds divided by its memory's share of a vCPU.
    counters = d["usage"]["counters"]
    for f in d["lambda_functions"]:
        metered = counters[f"lambda_seconds@{f['handler']}@{f['memory_mb']}"]
        assert f["billed_seconds"] == pytest.approx(metered / min(1.0, f["memory_mb"] / 1769))
        assert f["init_seconds_full_core"] > 0
    # Monolith: tasks sized from the metered per-shard CPU (/ 0.8, up to 32 units) and peak
    # memory (/ 0.8, up to 64 MiB), and the placement uses exactly those sizes.
    mc, secs = m["usage"]["counters"], m["usage"]["stream_seconds"]
    expected = []
    for sh in ("shard0", "shard1"):
        units = mc[f"worker_cpu_seconds@{sh}"] / secs * 1024 / 0.8
        mib = mc[f"worker_peak_rss_mb@{sh}"] / 0.8
        expected.append(
            {
                "cpu": max(32, math.ceil(units / 32) * 32),
                "memory_mb": max(64, math.ceil(mib / 64) * 64),
            }
        )
    assert report["right_sizing"]["shard_sizes"] == expected
    tasks = m["placement"]["tasks"]
    assert [{"cpu": t["cpu_units"], "memory_mb": t["memory_mb"]} for t in tasks] == expected
    reserved_vcpus = sum(e["cpu"] for e in expected) / 1024
    assert m["reserved_cpu_utilisation"] == pytest.approx(
        mc["worker_cpu_seconds"] / secs / reserved_vcpus
    )
    # The arm64 sweep places the monolith on a Graviton type, whatever type the sizing chose.
    arm = report["sweeps"]["cpu_architecture"]["rows"][1]
    assert load_prices().instance(arm["instance_type"]).architecture == "arm64"
    assert report["sources"][0]["duration"] == pytest.approx(4.0, abs=0.1)
    assert isinstance(report["sources"][0]["agree"], bool)
    # Loudness and transport are deployed (cdk.json): two more detector functions per segment,
    # each priced from its own metered invocations and seconds.
    rows = {r["detector"]: r for r in report["per_detector"]}
    assert list(rows) == d["usage"]["config"]["detectors"]
    assert {"loudness", "transport"} <= set(rows)
    (segments,) = [
        calls
        for (handler, _), (_, calls) in lambda_functions(counters).items()
        if handler == "lambdas.distributed.convert.handler"
    ]
    for name in ("loudness", "transport"):
        r = rows[name]
        calls = counters[f"detector_invocations@{name}@{r['memory_mb']}"]
        assert calls == segments
        assert r["invocations_per_stream_second"] == pytest.approx(calls / d["stream_seconds"])
        assert r["usd_per_stream_hour"] > 0
    # Accuracy against the clip's truth, for the detectors deployed at their minimum durations:
    # at 4 s only the clipping (and its true peak) outlasts them, and both are found.
    assert report["sources"][0]["accuracy"] == {
        "distributed": {"missed": 0, "false_alarms": 0},
        "monolith": {"missed": 0, "false_alarms": 0},
    }, report["sources"][0]
    md = (tmp_path / "report.md").read_text()
    assert "What each detector costs" in md and "| `loudness` |" in md
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["reduction"] == pytest.approx(report["reduction"])
    assert "per stream-hour" in capsys.readouterr().err


# --- --aws, against moto --------------------------------------------------------------------------

REGION = "us-east-1"
#: The stacks' front doors (function URLs), as their ApiUrl outputs give them.
DISTRIBUTED_API = f"https://dist0example.lambda-url.{REGION}.on.aws/"
MONOLITH_API = f"https://mono0example.lambda-url.{REGION}.on.aws/"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    from moto import mock_aws

    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        import boto3

        yield boto3.Session(region_name=REGION)


def _table_resource() -> dict[str, Any]:
    return {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "stream", "AttributeType": "S"},
                {"AttributeName": "defect", "AttributeType": "S"},
            ],
            "KeySchema": [
                {"AttributeName": "stream", "KeyType": "HASH"},
                {"AttributeName": "defect", "KeyType": "RANGE"},
            ],
        },
    }


def _deploy_stacks(session: Any) -> dict[str, Any]:
    """Both stacks in moto's CloudFormation with the outputs the real stacks declare."""
    cfn = session.client("cloudformation")
    iam = session.client("iam")
    role = iam.create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    distributed = {
        "Resources": {
            "Source": {"Type": "AWS::S3::Bucket"},
            "Intermediate": {"Type": "AWS::S3::Bucket"},
            "Table": _table_resource(),
            "Topic": {"Type": "AWS::SNS::Topic"},
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "StateMachineName": "vqa-distributed",
                    "DefinitionString": definition,
                    "RoleArn": role,
                },
            },
        },
        "Outputs": {
            "StateMachineArn": {"Value": {"Ref": "Machine"}},
            "SourceBucket": {"Value": {"Ref": "Source"}},
            "IntermediateBucket": {"Value": {"Ref": "Intermediate"}},
            "ResultsTable": {"Value": {"Ref": "Table"}},
            "AlertsTopic": {"Value": {"Ref": "Topic"}},
            "ApiUrl": {"Value": DISTRIBUTED_API},
        },
    }
    ecs = session.client("ecs")
    ecs.create_cluster(clusterName="vqa-cluster")
    td = ecs.register_task_definition(
        family="shard",
        cpu="1024",
        memory="1536",
        containerDefinitions=[{"name": "w", "image": "vqa"}],
    )
    arn = td["taskDefinition"]["taskDefinitionArn"]
    for shard in ("ShardA", "ShardB"):
        ecs.create_service(
            cluster="vqa-cluster", serviceName=f"vqa-{shard}", taskDefinition=arn, desiredCount=1
        )
    monolith = {
        "Resources": {
            "Source": {"Type": "AWS::S3::Bucket"},
            "Table": _table_resource(),
            "Topic": {"Type": "AWS::SNS::Topic"},
            "QueueA": {"Type": "AWS::SQS::Queue"},
            "QueueB": {"Type": "AWS::SQS::Queue"},
            "Instances": {
                "Type": "AWS::EC2::LaunchTemplate",
                "Properties": {
                    "LaunchTemplateData": {"ImageId": "ami-12c6146b", "InstanceType": "c7i.large"}
                },
            },
        },
        "Outputs": {
            "OrchestratorFunctionName": {"Value": "vqa-orchestrator"},
            "DefectsTableName": {"Value": {"Ref": "Table"}},
            "SourceBucketName": {"Value": {"Ref": "Source"}},
            "ClusterName": {"Value": "vqa-cluster"},
            "ShardAQueueUrl": {"Value": {"Ref": "QueueA"}},
            "ShardBQueueUrl": {"Value": {"Ref": "QueueB"}},
            "ShardAServiceName": {"Value": "vqa-ShardA"},
            "ShardBServiceName": {"Value": "vqa-ShardB"},
            "ApiUrl": {"Value": MONOLITH_API},
        },
    }
    cfn.create_stack(StackName="VqaDistributed", TemplateBody=json.dumps(distributed))
    cfn.create_stack(StackName="VqaMonolith", TemplateBody=json.dumps(monolith))
    return {"distributed": distributed, "monolith": monolith}


def test_count_transitions_states_entered_plus_retries() -> None:
    from vqa.aws_experiment import count_transitions

    events = [
        {"type": "ExecutionStarted"},
        {"type": "TaskStateEntered"},
        {"type": "LambdaFunctionScheduled"},
        {"type": "LambdaFunctionFailed"},
        {"type": "LambdaFunctionScheduled"},  # one retry
        {"type": "LambdaFunctionSucceeded"},
        {"type": "TaskStateExited"},
        {"type": "ParallelStateEntered"},
        {"type": "TaskStateEntered"},
        {"type": "TaskScheduled"},
        {"type": "TaskSucceeded"},
        {"type": "ChoiceStateEntered"},
        {"type": "SucceedStateEntered"},
        {"type": "ExecutionSucceeded"},
    ]
    assert count_transitions(events) == 5 + 1


def test_transitions_from_moto_execution_history(aws: Any) -> None:
    import datetime as dt

    from vqa.aws_experiment import Metering, Window, count_transitions

    _deploy_stacks(aws)
    sfn = aws.client("stepfunctions")
    arn = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    now = dt.datetime.now(dt.UTC)
    for i in range(2):
        sfn.start_execution(stateMachineArn=arn, name=f"s{i}", input="{}")
    history = sfn.get_execution_history(
        executionArn=sfn.list_executions(stateMachineArn=arn)["executions"][0]["executionArn"]
    )
    per_execution = count_transitions(history["events"])
    assert per_execution > 0
    m = Metering(aws.client, Window(now - dt.timedelta(minutes=1), now + dt.timedelta(minutes=5)))
    m.state_machine(arn)
    assert m.counters["sfn_executions"] == 2
    assert m.counters["state_transitions"] == 2 * per_execution
    assert m.config["workflow_type"] == "STANDARD"


def _put(cw: Any, namespace: str, metric: str, value: float, **dims: str) -> None:
    cw.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": metric,
                "Value": value,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
            }
        ],
    )


def test_metering_reads_cloudwatch_into_the_usage_schema(aws: Any) -> None:
    import datetime as dt

    from vqa.aws_experiment import Metering, Window
    from vqa.cost import price_usage
    from vqa.pricing import load_prices

    cw = aws.client("cloudwatch")
    lam = aws.client("lambda")
    role = aws.client("iam").create_role(RoleName="l", AssumeRolePolicyDocument="{}")["Role"]
    lam.create_function(
        FunctionName="detect",
        Runtime="python3.12",
        Role=role["Arn"],
        Handler="h.handler",
        Code={"ZipFile": b"x"},
        MemorySize=1024,
        Architectures=["arm64"],
    )
    _put(cw, "AWS/Lambda", "Invocations", 60, FunctionName="detect")
    _put(cw, "AWS/Lambda", "Duration", 6000.0, FunctionName="detect")
    _put(cw, "AWS/Logs", "IncomingBytes", 4096, LogGroupName="/aws/lambda/detect")
    s3dims = {"BucketName": "inter", "FilterId": "EntireBucket"}
    _put(cw, "AWS/S3", "PutRequests", 250, **s3dims)
    _put(cw, "AWS/S3", "GetRequests", 750, **s3dims)
    _put(cw, "AWS/S3", "BytesUploaded", 1_000_000, **s3dims)
    _put(cw, "AWS/DynamoDB", "ConsumedWriteCapacityUnits", 7, TableName="defects")
    _put(cw, "AWS/SNS", "NumberOfMessagesPublished", 3, TopicName="alerts")
    _put(cw, "AWS/SQS", "NumberOfMessagesSent", 2, QueueName="q")
    _put(cw, "AWS/SQS", "NumberOfMessagesReceived", 2, QueueName="q")
    _put(cw, "AWS/SQS", "NumberOfEmptyReceives", 5, QueueName="q")
    _put(cw, "AWS/SQS", "NumberOfMessagesDeleted", 2, QueueName="q")
    now = dt.datetime.now(dt.UTC)
    m = Metering(aws.client, Window(now - dt.timedelta(minutes=5), now + dt.timedelta(minutes=5)))
    m.functions(["detect"])
    m.buckets(["inter"])
    m.tables(["defects"])
    m.topics([f"arn:aws:sns:{REGION}:123456789012:alerts"])
    m.queues([f"https://sqs.{REGION}.amazonaws.com/123456789012/q"])
    usage = m.usage("distributed", 10.0, 12.0)
    c = usage["counters"]
    assert c["lambda_invocations"] == 60
    assert c["lambda_seconds"] == pytest.approx(6.0)
    assert c["lambda_gb_seconds"] == pytest.approx(6.0)
    assert c["log_bytes"] == 4096
    assert c["dynamodb_write_units"] == 7
    assert usage["config"]["lambda_architecture"] == "arm64"
    assert usage["requests"]["s3"] == {"PutObject": 250, "GetObject": 750}
    assert usage["requests"]["sns"] == {"Publish": 3}
    assert usage["requests"]["sqs"] == {"SendMessage": 2, "ReceiveMessage": 7, "DeleteMessage": 2}
    assert usage["bytes"]["s3_put"] == 1_000_000
    lines = {li.item: li for li in price_usage(usage, load_prices()).line_items}
    assert lines["S3 PUT/COPY/POST/LIST requests"].quantity == 250
    assert lines["DynamoDB write request units"].quantity == 7
    assert lines["Lambda GB-seconds (arm64)"].quantity == pytest.approx(6.0)


def test_metering_ecs_cpu_and_asg_instance_hours(aws: Any) -> None:
    import datetime as dt

    from vqa.aws_experiment import Metering, Window

    _deploy_stacks(aws)
    ec2 = aws.client("ec2")
    ec2.create_launch_template(
        LaunchTemplateName="vqa-ci",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "c7i.large"},
    )
    asg = aws.client("autoscaling")
    asg.create_auto_scaling_group(
        AutoScalingGroupName="vqa-asg",
        MinSize=0,
        MaxSize=2,
        DesiredCapacity=0,
        LaunchTemplate={"LaunchTemplateName": "vqa-ci", "Version": "$Default"},
        AvailabilityZones=[f"{REGION}a"],
    )
    cw = aws.client("cloudwatch")
    _put(cw, "AWS/ECS", "CPUUtilization", 50.0, ClusterName="vqa-cluster", ServiceName="vqa-ShardA")
    _put(cw, "AWS/AutoScaling", "GroupInServiceInstances", 1.0, AutoScalingGroupName="vqa-asg")
    now = dt.datetime.now(dt.UTC)
    m = Metering(aws.client, Window(now - dt.timedelta(minutes=5), now + dt.timedelta(minutes=5)))
    m.services("vqa-cluster", ["vqa-ShardA", "vqa-ShardB"])
    m.auto_scaling_groups(["vqa-asg"])
    ecs = aws.client("ecs")
    svc = ecs.describe_services(cluster="vqa-cluster", services=["vqa-ShardA"])["services"][0]
    tasks = max(1, svc.get("runningCount") or svc.get("desiredCount") or 1)
    # 50% of a 1024-unit (1 vCPU) task for one 60 s period.
    assert m.counters["worker_cpu_seconds"] == pytest.approx(0.5 * 1.0 * tasks * 60)
    assert m.counters["asg_instance_hours"] == pytest.approx(60 / 3600)
    assert m.config["instance_type"] == "c7i.large"


def test_cost_explorer_groups_by_architecture_tag(aws: Any) -> None:
    import requests

    from vqa.aws_experiment import cost_explorer_costs

    def group(arch: str, service: str, amount: str) -> dict[str, Any]:
        return {
            "Keys": [f"vqa:architecture${arch}", service],
            "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}},
        }

    result: dict[str, Any] = {
        "results": [
            {
                "ResultsByTime": [
                    {
                        "TimePeriod": {"Start": "2026-11-01", "End": "2026-11-02"},
                        "Total": {},
                        "Groups": [
                            group("distributed", "AWS Step Functions", "1.25"),
                            group("distributed", "Amazon Simple Storage Service", "0.50"),
                            group("monolith", "Amazon Elastic Compute Cloud - Compute", "0.10"),
                        ],
                        "Estimated": False,
                    },
                    {
                        "TimePeriod": {"Start": "2026-11-02", "End": "2026-11-03"},
                        "Total": {},
                        "Groups": [
                            group("distributed", "AWS Step Functions", "0.75"),
                            group("", "AWS Key Management Service", "0.01"),
                        ],
                        "Estimated": True,
                    },
                ]
            }
        ]
    }
    resp = requests.post(
        "http://motoapi.amazonaws.com/moto-api/static/ce/cost-and-usage-results",
        json=result,
        timeout=10,
    )
    assert resp.status_code == 201
    costs = cost_explorer_costs(aws.client("ce"), "2026-11-01", "2026-11-03")
    by = costs["by_architecture"]
    assert by["distributed"]["AWS Step Functions"] == pytest.approx(2.0)
    assert costs["totals"]["distributed"] == pytest.approx(2.5)
    assert costs["totals"]["monolith"] == pytest.approx(0.10)
    assert by["untagged"]["AWS Key Management Service"] == pytest.approx(0.01)
    with pytest.raises(ConfigError, match="TO must be after FROM"):
        cost_explorer_costs(aws.client("ce"), "2026-11-03", "2026-11-01")


class FrontDoors:
    """The stacks' function URLs, answered by the real API (vqa.api) over moto: what
    ``urllib.request.urlopen`` reaches in place of AWS. Records each request and checks that it
    is SigV4-signed for Lambda function URLs in the URL's region, as AWS_IAM auth requires."""

    def __init__(self, apis: dict[str, Any]) -> None:
        self.apis = apis  # function URL host -> vqa.api.Api
        self.requests: list[tuple[str, str, str]] = []  # (host, method, path)

    def urlopen(self, request: Any, timeout: float = 0.0) -> Any:
        import io
        import urllib.error
        from urllib.parse import urlsplit

        url = urlsplit(request.full_url)
        auth = request.get_header("Authorization") or ""
        assert auth.startswith("AWS4-HMAC-SHA256 "), auth
        assert f"/{REGION}/lambda/aws4_request" in auth, auth
        self.requests.append((url.netloc, request.get_method(), url.path))
        status, body = self.apis[url.netloc].handle(request.get_method(), url.path, request.data)
        raw = json.dumps(body).encode()
        if status >= 400:
            raise urllib.error.HTTPError(request.full_url, status, "error", {}, io.BytesIO(raw))  # type: ignore[arg-type]
        return io.BytesIO(raw)


def test_aws_mode_end_to_end_against_moto(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stacks found by their outputs, the source uploaded to both, both started through their
    front doors (POST /streams, signed), polled with GET /streams/{id} until both finish, the
    defects read from that view, usage metered."""
    import functools
    import urllib.request
    from urllib.parse import urlsplit

    from vqa import api, aws_experiment
    from vqa.aws_experiment import AwsExperiment
    from vqa.defects import Defect
    from vqa.results import put_defects, put_status
    from vqa.urlguard import UrlGuard

    deployed = _deploy_stacks(aws)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00" * 1024)
    ddb = aws.client("dynamodb")
    cfn = aws.client("cloudformation")
    outputs = {
        arch: {
            o["OutputKey"]: o["OutputValue"]
            for o in cfn.describe_stacks(StackName=name)["Stacks"][0]["Outputs"]
        }
        for arch, name in (("distributed", "VqaDistributed"), ("monolith", "VqaMonolith"))
    }
    assert set(deployed) == set(outputs)
    started: list[tuple[str, str, str]] = []  # (architecture, table, stream id)

    def orchestrator(stream_id: str, request: api.StreamRequest) -> None:
        # What the orchestrator Lambda does (moto cannot run Lambda code without Docker).
        put_status(
            dynamodb=ddb,
            table=outputs["monolith"]["DefectsTableName"],
            stream=stream_id,
            state="running",
            source=request.source,
            shards=json.dumps(["ShardA", "ShardB"]),
        )
        started.append(("monolith", outputs["monolith"]["DefectsTableName"], stream_id))

    sfn_start = api.StepFunctionsStarter(
        aws.client("stepfunctions"), outputs["distributed"]["StateMachineArn"]
    )

    def state_machine(stream_id: str, request: api.StreamRequest) -> None:
        sfn_start(stream_id, request)
        started.append(("distributed", outputs["distributed"]["ResultsTable"], stream_id))

    doors = FrontDoors(
        {
            urlsplit(DISTRIBUTED_API).netloc: api.Api(
                dynamodb=ddb,
                table=outputs["distributed"]["ResultsTable"],
                start=state_machine,
                guard=UrlGuard(),
                source_bucket=outputs["distributed"]["SourceBucket"],
            ),
            urlsplit(MONOLITH_API).netloc: api.Api(
                dynamodb=ddb,
                table=outputs["monolith"]["DefectsTableName"],
                start=orchestrator,
                guard=UrlGuard(),
                source_bucket=outputs["monolith"]["SourceBucketName"],
            ),
        }
    )
    monkeypatch.setattr(urllib.request, "urlopen", doors.urlopen)

    def fake_sleep(_: float) -> None:
        # The deployed system finishing: defects stored, status done (monolith: per shard,
        # then the stream, as the last worker does).
        for arch, table, stream in started:
            put_defects(
                dynamodb=ddb,
                table=table,
                stream=stream,
                defects=[Defect(start=1.0, end=2.5, kind="black")],
            )
            if arch == "monolith":
                for shard in ("ShardA", "ShardB"):
                    ddb.update_item(
                        TableName=table,
                        Key={"stream": {"S": stream}, "defect": {"S": "#status"}},
                        UpdateExpression="SET #s = :d",
                        ExpressionAttributeNames={"#s": f"shard_{shard}"},
                        ExpressionAttributeValues={":d": {"S": "done"}},
                    )
            put_status(dynamodb=ddb, table=table, stream=stream, state="done")

    monkeypatch.setattr(AwsExperiment, "duration_of", staticmethod(lambda s: 10.0))
    monkeypatch.setattr(
        aws_experiment,
        "AwsExperiment",
        functools.partial(AwsExperiment, sleep=fake_sleep, poll_seconds=0, metrics_delay_seconds=0),
    )
    # Seed the metrics the stacks would emit so both architectures have something to price.
    cw = aws.client("cloudwatch")
    for bucket in aws.client("s3").list_buckets()["Buckets"]:
        _put(cw, "AWS/S3", "PutRequests", 10, BucketName=bucket["Name"], FilterId="EntireBucket")
    _put(cw, "AWS/ECS", "CPUUtilization", 20.0, ClusterName="vqa-cluster", ServiceName="vqa-ShardA")

    report = run_experiment([str(clip)], out_dir=tmp_path / "out", aws=True, progress=False)

    _check_contract(report)
    assert report["mode"] == "aws"
    assert report["sources"][0]["agree"] is True
    assert report["sources"][0]["defects"] == {"distributed": 1, "monolith": 1}
    # Both stacks driven the same way: one POST each, then GETs of that stream until done.
    for arch, door in (("distributed", DISTRIBUTED_API), ("monolith", MONOLITH_API)):
        calls = [(m, p) for h, m, p in doors.requests if h == urlsplit(door).netloc]
        (stream,) = [s for a, _, s in started if a == arch]
        assert calls[0] == ("POST", "/streams"), calls
        assert calls[1:] and set(calls[1:]) == {("GET", f"/streams/{stream}")}, calls
    assert sorted(a for a, _, _ in started) == ["distributed", "monolith"]
    d_usage = report["architectures"]["distributed"]["usage"]
    assert d_usage["counters"]["sfn_executions"] == 1
    assert d_usage["counters"]["state_transitions"] > 0
    assert d_usage["requests"]["s3"]["PutObject"] == 20  # two distributed buckets
    assert report["architectures"]["monolith"]["usage"]["counters"]["worker_cpu_seconds"] > 0
    sfn = aws.client("stepfunctions")
    machine = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    execution = sfn.list_executions(stateMachineArn=machine)["executions"][0]
    inp = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert inp["source"].startswith("s3://") and inp["index"] == 0
    assert inp["request"]["source"] == inp["source"]  # started by the front door's starter
    # Uploaded once to each stack's source bucket.
    s3 = aws.client("s3")
    keys = [
        o["Key"]
        for b in s3.list_buckets()["Buckets"]
        for o in s3.list_objects_v2(Bucket=b["Name"]).get("Contents", [])
    ]
    assert len(keys) == 2 and all(k.endswith("/clip.mp4") for k in keys)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Deployed run (--aws)" in md
    assert set(report["aws"]["model_usd_run"]) == {"distributed", "monolith"}
    assert report["aws"]["asg_instance_type"] == "c7i.large"


def test_a_refused_submission_is_a_clear_error(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A front door's 4xx stops the run with the API's own one-line reason."""
    import urllib.request
    from urllib.parse import urlsplit

    from vqa import api
    from vqa.aws_experiment import AwsExperiment, AwsExperimentError, Stream
    from vqa.urlguard import UrlGuard

    _deploy_stacks(aws)

    def never(stream_id: str, request: api.StreamRequest) -> None:
        raise AssertionError("a refused request must start nothing")

    ddb = aws.client("dynamodb")
    table = ddb.list_tables()["TableNames"][0]
    door = api.Api(dynamodb=ddb, table=table, start=never, guard=UrlGuard())
    doors = FrontDoors({urlsplit(DISTRIBUTED_API).netloc: door})
    monkeypatch.setattr(urllib.request, "urlopen", doors.urlopen)
    exp = AwsExperiment(session=aws, progress=False)
    client = exp.api(exp.stacks()["distributed"], "distributed")
    st = Stream("distributed", "exp-x-0-dist", "origin", "http://169.254.169.254/x.m3u8", 1.0)
    with pytest.raises(AwsExperimentError) as err:
        exp.submit(client, st)
    msg = str(err.value)
    assert "\n" not in msg and "HTTP 400" in msg and "EC2 instance metadata" in msg, msg


def test_missing_stack_is_a_clear_error(aws: Any) -> None:
    from vqa.aws_experiment import AwsExperiment, AwsExperimentError

    with pytest.raises(AwsExperimentError, match="stack VqaDistributed: not found"):
        AwsExperiment(session=aws, progress=False).stacks()


def test_per_detector_prices_each_detector_function_from_its_own_counters() -> None:
    from vqa.cost import ModelParams
    from vqa.sweeps import per_detector

    prices = load_prices()
    usage = {
        "architecture": "distributed",
        "stream_seconds": 10.0,
        "config": {"detectors": ["black", "loudness"], "workflow_type": "STANDARD"},
        "counters": {
            "detector_seconds@loudness@1024": 0.5,
            "detector_invocations@loudness@1024": 10,
            "detector_seconds@black@1024": 2.0,
            "detector_invocations@black@1024": 10,
        },
    }
    rows = per_detector(usage, prices, ModelParams())
    assert [r["detector"] for r in rows] == ["black", "loudness"]  # the configured order
    loud = rows[1]
    # 10 requests ($0.20 per million) and 10 state transitions ($0.025 per thousand), and 0.5 s
    # on a full core billed at 1024 MB's share of a vCPU (1024 / 1769) as GB-seconds.
    gb_s = 0.5 / (1024 / 1769) * 1.0
    per_run = 10 * (0.20 / 1e6 + 0.025 / 1e3) + gb_s * prices.unit_usd("lambda", "duration_x86_64")
    assert loud["usd_per_stream_hour"] == pytest.approx(per_run * 360)
    assert loud["cpu_ms_per_stream_second"] == pytest.approx(50.0)
    assert loud["invocations_per_stream_second"] == pytest.approx(1.0)
    # Express bills no transitions; a run metered without per-detector counters has no rows.
    express = {**usage, "config": {**usage["config"], "workflow_type": "EXPRESS"}}
    assert per_detector(express, prices, ModelParams())[1]["usd_per_stream_hour"] == pytest.approx(
        (per_run - 10 * 0.025 / 1e3) * 360
    )
    assert per_detector({**usage, "counters": {}}, prices, ModelParams()) == []
