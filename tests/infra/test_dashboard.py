"""The operations dashboard and the alarms that page an operator, in both synthesized stacks.

A dashboard's body synthesizes as an ``Fn::Join`` around the stack's tokens (region, function
names); :func:`_body` joins it with each token written as ``<LogicalId>`` so the JSON can be
read, and the references compared with the template's own resources.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_cdk.assertions import Template

from stacks import load_context
from stacks.config import VqaConfig
from vqa import metrics

DISTRIBUTED, MONOLITH = "VqaDistributed", "VqaMonolith"
ARCHITECTURES = {DISTRIBUTED: "distributed", MONOLITH: "monolith"}
#: What issue 13 asks each dashboard to show, as words its widget titles must contain.
REQUIRED_WIDGETS = (
    "streams monitored",
    "lag",
    "defects",
    "alerts",
    "errors",
    "state transitions",
    "s3 requests",
    "gb-seconds",
    "instances",
    "processing time",
)
#: The metric the shard services derive from their workers' logs (a metric filter, not EMF).
LOG_DERIVED = "WorkerCheckpoints"


def _of_type(template: Template, type_: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template.to_json()["Resources"].items() if r["Type"] == type_}


def _token(value: Any) -> str:
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    raise AssertionError(f"unexpected token in the dashboard body: {value}")


def _body(template: Template) -> dict[str, Any]:
    (dashboard,) = _of_type(template, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]
    if isinstance(body, str):
        return dict(json.loads(body))
    sep, parts = body["Fn::Join"]
    return dict(json.loads(sep.join(_token(p) for p in parts)))


def _metric_widgets(body: dict[str, Any]) -> dict[str, list[Any]]:
    return {
        w["properties"]["title"]: w["properties"]["metrics"]
        for w in body["widgets"]
        if w["type"] == "metric"
    }


def _dashboard_metrics(body: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """``(namespace, metric name, dimensions)`` of every metric the dashboard plots, SEARCH
    expressions included (their namespace is the schema's first element)."""
    found = []
    for lines in _metric_widgets(body).values():
        for line in lines:
            if isinstance(line[0], dict):  # a math expression: only SEARCH names metrics
                expression = line[0]["expression"]
                if "SEARCH" in expression:
                    (schema,) = re.findall(r"\{([^}]*)\}", expression)
                    namespace, *dims = schema.split(",")
                    (name,) = re.findall(r'MetricName="([^"]+)"', expression)
                    values = dict(re.findall(r'(\w+)="([^"]+)"', expression))
                    found.append((namespace, name, {d: values.get(d, "*") for d in dims}))
                continue
            *fields, _options = line if isinstance(line[-1], dict) else (*line, {})
            namespace, name, *pairs = fields
            found.append((namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True))))
    return found


def _alarm_metrics(props: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    def dims(raw: list[dict[str, Any]]) -> dict[str, str]:
        return {d["Name"]: _token(d["Value"]) for d in raw}

    if "MetricName" in props:
        return [(props["Namespace"], props["MetricName"], dims(props.get("Dimensions", [])))]
    return [
        (m["Namespace"], m["MetricName"], dims(m.get("Dimensions", [])))
        for q in props["Metrics"]
        if "MetricStat" in q
        for m in [q["MetricStat"]["Metric"]]
    ]


def _topic_alarms(template: Template) -> dict[str, dict[str, Any]]:
    (topic,) = _of_type(template, "AWS::SNS::Topic")
    return {
        k: a["Properties"]
        for k, a in _of_type(template, "AWS::CloudWatch::Alarm").items()
        if a["Properties"].get("AlarmActions") == [{"Ref": topic}]
    }


# ---------------------------------------------------------------- the dashboard


def test_both_stacks_have_one_dashboard_with_the_same_widgets(
    templates: dict[str, Template],
) -> None:
    layouts = {
        stack: [(w["type"], w["properties"].get("title")) for w in _body(t)["widgets"]]
        for stack, t in templates.items()
    }
    assert layouts[DISTRIBUTED] == layouts[MONOLITH]
    titles = " | ".join(str(title).lower() for _, title in layouts[DISTRIBUTED])
    for words in REQUIRED_WIDGETS:
        assert words in titles, words
    # Titles are unique: the comparison above is widget by widget.
    assert len(set(layouts[MONOLITH])) == len(layouts[MONOLITH])


@pytest.mark.parametrize("stack", [DISTRIBUTED, MONOLITH])
def test_every_metric_referenced_is_emitted_by_vqa_or_aws(
    templates: dict[str, Template], stack: str
) -> None:
    """A widget or an alarm on a metric nobody emits would watch nothing and never fire."""
    template = templates[stack]
    filters = {
        t["MetricName"]
        for f in _of_type(template, "AWS::Logs::MetricFilter").values()
        for t in f["Properties"]["MetricTransformations"]
    }
    referenced = _dashboard_metrics(_body(template)) + [
        m
        for a in _of_type(template, "AWS::CloudWatch::Alarm").values()
        for m in _alarm_metrics(a["Properties"])
    ]
    vqa_names = set()
    for namespace, name, dims in referenced:
        if namespace.startswith("AWS/"):
            continue
        assert namespace == metrics.NAMESPACE, (namespace, name)
        if name in filters:
            assert name == LOG_DERIVED
            continue
        assert name in metrics.ALL, f"{name}: no handler or worker emits it (vqa.metrics.ALL)"
        # Exactly the dimensions the emitters write: Powertools' service, the architecture
        # (and Kind on DefectsStarted, matched by the SEARCH's schema).
        expected = {"service": metrics.SERVICE, metrics.ARCHITECTURE: ARCHITECTURES[stack]}
        if name == metrics.DEFECTS_STARTED:
            expected[metrics.KIND] = "*"
        assert dims == expected, (name, dims)
        vqa_names.add(name)
    # The operator's view covers what the issue names. (A distributed stream fails as its
    # execution does: AWS/States metrics, no StreamsFailed.)
    assert {
        metrics.MONITORED_SECONDS,
        metrics.LIVE_EDGE_LAG,
        metrics.DEFECTS_STARTED,
        metrics.ALERTS_PUBLISHED,
        metrics.INPUT_LOSS,
        metrics.PROCESSING_PER_STREAM_SECOND,
    } <= vqa_names
    assert (metrics.STREAMS_FAILED in vqa_names) == (stack == MONOLITH)


def _emitted_dimensions(architecture: str) -> dict[str, set[frozenset[str]]]:
    """Metric name -> the dimension-name sets the package's own emitter writes them with (one
    EMF document set per metric of :mod:`vqa.metrics`, through :mod:`vqa.observability`)."""
    from vqa.events import DefectEvent
    from vqa.observability import Observer, emf_documents

    lines: list[str] = []
    observer = Observer(
        f"dashboard-test-{architecture}",
        architecture=architecture,
        sink=lines.append,
        in_lambda=False,
    )
    observer.segments(2, stream_seconds=2.0, processing_seconds=0.5)
    observer.live_edge_lag(1.5)
    observer.alerts_published(1)
    observer.stream_failed()
    observer.defects_started(
        [DefectEvent.started("black", 1.0), DefectEvent.started("input_loss", 2.0)]
    )
    observer.flush()
    emitted: dict[str, set[frozenset[str]]] = {}
    for doc in emf_documents(lines):
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == metrics.NAMESPACE
            for metric in directive["Metrics"]:
                for dims in directive["Dimensions"]:
                    assert doc.get(metrics.ARCHITECTURE) == architecture
                    emitted.setdefault(metric["Name"], set()).add(frozenset(dims))
    return emitted


@pytest.mark.parametrize("stack", [DISTRIBUTED, MONOLITH])
def test_dashboard_and_alarms_watch_the_dimensions_the_emitter_writes(
    templates: dict[str, Template], stack: str
) -> None:
    """CloudWatch matches a metric on its exact dimension set: checked against EMF documents
    the package really writes, not against the stacks' own idea of them."""
    emitted = _emitted_dimensions(ARCHITECTURES[stack])
    assert set(emitted) == set(metrics.ALL)
    template = templates[stack]
    referenced = _dashboard_metrics(_body(template)) + [
        m
        for a in _of_type(template, "AWS::CloudWatch::Alarm").values()
        for m in _alarm_metrics(a["Properties"])
    ]
    watched = [(n, frozenset(d)) for ns, n, d in referenced if n in metrics.ALL]
    assert watched
    for name, dims in watched:
        assert dims in emitted[name], (name, sorted(dims), emitted[name])


def test_defects_by_kind_and_streams_monitored_are_expressions(
    templates: dict[str, Template],
) -> None:
    for stack, template in templates.items():
        widgets = _metric_widgets(_body(template))
        (defects,) = [v for k, v in widgets.items() if "defects" in k.lower()]
        expressions = [line[0]["expression"] for line in defects if isinstance(line[0], dict)]
        assert any(e.startswith("SEARCH(") and metrics.DEFECTS_STARTED in e for e in expressions)
        (streams,) = [v for k, v in widgets.items() if "streams monitored" in k.lower()]
        (expression,) = [line[0] for line in streams if isinstance(line[0], dict)]
        (seconds,) = [line for line in streams if metrics.MONITORED_SECONDS in line]
        # Stream-seconds analysed per minute / 60 s: the number of streams kept up with.
        assert expression["expression"] == f"{seconds[-1]['id']} / 60", stack
        assert seconds[-1]["stat"] == "Sum" and seconds[-1]["period"] == 60


def test_lambda_gb_seconds_use_each_functions_configured_memory(
    templates: dict[str, Template],
) -> None:
    for stack, template in templates.items():
        functions = _of_type(template, "AWS::Lambda::Function")
        python = {k for k, f in functions.items() if f["Properties"]["Runtime"].startswith("py")}
        widgets = _metric_widgets(_body(template))
        (lines,) = [v for k, v in widgets.items() if "gb-seconds" in k.lower()]
        (expression,) = [line[0]["expression"] for line in lines if isinstance(line[0], dict)]
        durations = {
            line[-1]["id"]: line[3].strip("<>")
            for line in lines
            if not isinstance(line[0], dict) and line[1] == "Duration"
        }
        assert set(durations.values()) == python, stack
        terms = dict(re.findall(r"FILL\((\w+), 0\) \* (\d+)", expression))
        assert {durations[i]: int(mb) for i, mb in terms.items()} == {
            fn: functions[fn]["Properties"]["MemorySize"] for fn in python
        }
        # Lambda's Duration is in milliseconds and memory in MiB: GB-s = ms x MiB / 1024 / 1000.
        assert expression.endswith("/ 1024 / 1000")


def test_cost_drivers_follow_each_architectures_resources(
    templates: dict[str, Template],
) -> None:
    def plotted(stack: str, words: str) -> list[Any]:
        widgets = _metric_widgets(_body(templates[stack]))
        (lines,) = [v for k, v in widgets.items() if words in k.lower()]
        return list(lines)

    def zero_only(lines: list[Any]) -> bool:
        return [line[0].get("expression") for line in lines] == ["TIME_SERIES(0)"]

    (machine,) = _of_type(templates[DISTRIBUTED], "AWS::StepFunctions::StateMachine")
    transitions = plotted(DISTRIBUTED, "state transitions")
    assert ["AWS/States", "ConsumedCapacity", "ServiceMetric", "StateTransition"] in [
        line[:-1] for line in transitions
    ]
    assert any(f"<{machine}>" in line for line in transitions)
    assert zero_only(plotted(MONOLITH, "state transitions"))

    (asg,) = _of_type(templates[MONOLITH], "AWS::AutoScaling::AutoScalingGroup")
    (instances,) = plotted(MONOLITH, "instances")
    assert instances[:4] == [
        "AWS/AutoScaling",
        "GroupInServiceInstances",
        "AutoScalingGroupName",
        f"<{asg}>",
    ]
    assert zero_only(plotted(DISTRIBUTED, "instances"))

    # S3 requests of the bucket between stages (distributed) or the checkpoints (monolith),
    # through the request-metrics filter the buckets define.
    for stack, bucket_words in ((DISTRIBUTED, "Intermediate"), (MONOLITH, "Checkpoints")):
        buckets = _of_type(templates[stack], "AWS::S3::Bucket")
        s3 = plotted(stack, "s3 requests")
        names = {line[3].strip("<>") for line in s3}
        assert len(names) == 1 and bucket_words in names.pop(), stack
        filters = {line[5] for line in s3}
        (bucket,) = [b for k, b in buckets.items() if bucket_words in k]
        assert filters == {m["Id"] for m in bucket["Properties"]["MetricsConfigurations"]}
        assert {line[1] for line in s3} == {"PutRequests", "GetRequests"}


def test_errors_show_every_function_and_dead_letter_queue(
    templates: dict[str, Template],
) -> None:
    for stack, template in templates.items():
        widgets = _metric_widgets(_body(template))
        (errors,) = [v for k, v in widgets.items() if k.lower() == "errors"]
        plotted = {tuple(line[1:4]) for line in errors if not isinstance(line[0], dict)}
        functions = set(_of_type(template, "AWS::Lambda::Function"))
        watched = {f.strip("<>") for name, _, f in plotted if name == "Errors"}
        python = {
            k
            for k in functions
            if template.to_json()["Resources"][k]["Properties"]["Runtime"].startswith("python")
        }
        assert watched == python, stack
        dlqs = {
            q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            for q in _of_type(template, "AWS::SQS::Queue").values()
            if "RedrivePolicy" in q["Properties"]
        }
        queues = {
            q.strip("<>").removesuffix(".QueueName")
            for name, _, q in plotted
            if name == "ApproximateNumberOfMessagesVisible"
        }
        assert queues == dlqs, stack
        failed = [line[0]["label"] for line in errors if isinstance(line[0], dict)]
        if stack == MONOLITH:
            assert (metrics.STREAMS_FAILED, "Architecture", "monolith") in plotted
        else:  # every failure ends the execution (the Fail state after "Record failure")
            assert any(label.startswith("streams failed") for label in failed)
            assert {n for n, _, _ in plotted} >= {
                "ExecutionsFailed",
                "ExecutionsTimedOut",
                "ExecutionsAborted",
            }


def test_alarm_widget_and_outputs(templates: dict[str, Template]) -> None:
    for stack, template in templates.items():
        (alarms_widget,) = [w for w in _body(template)["widgets"] if w["type"] == "alarm"]
        shown = {a.strip("<>").removesuffix(".Arn") for a in alarms_widget["properties"]["alarms"]}
        assert shown == set(_topic_alarms(template)), stack
        (dashboard,) = _of_type(template, "AWS::CloudWatch::Dashboard")
        outputs = template.to_json()["Outputs"]
        assert outputs["DashboardName"]["Value"] == {"Ref": dashboard}
        url = outputs["DashboardUrl"]["Value"]["Fn::Join"][1]
        assert {"Ref": dashboard} in url and {"Ref": "AWS::Region"} in url


# ---------------------------------------------------------------- the alarms


@pytest.mark.parametrize("stack", [DISTRIBUTED, MONOLITH])
def test_operational_alarms_page_the_alerts_topic(
    templates: dict[str, Template], stack: str
) -> None:
    config = VqaConfig.from_context(load_context()["vqa"])
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for props in _topic_alarms(templates[stack]).values():
        assert props["TreatMissingData"] == "notBreaching"
        if props.get("Namespace") == metrics.NAMESPACE:
            by_metric.setdefault(props["MetricName"], []).append(props)
            assert {d["Name"]: d["Value"] for d in props["Dimensions"]} == {
                "service": metrics.SERVICE,
                metrics.ARCHITECTURE: ARCHITECTURES[stack],
            }
    (loss,) = by_metric[metrics.INPUT_LOSS]
    any_count = [loss]
    if stack == MONOLITH:
        any_count += by_metric.pop(metrics.STREAMS_FAILED)
    else:  # the distributed stack's stream-failed alarm is its failed-executions alarm
        assert metrics.STREAMS_FAILED not in by_metric
        assert any(
            p.get("MetricName") == "ExecutionsFailed"
            for p in _topic_alarms(templates[stack]).values()
        )
    for alarm in any_count:
        assert (alarm["Statistic"], alarm["Threshold"], alarm["EvaluationPeriods"]) == ("Sum", 0, 1)
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    (lag,) = by_metric[metrics.LIVE_EDGE_LAG]
    # Ten segments of cdk.json's segment length, held in every minute of five.
    assert lag["Statistic"] == "Maximum" and lag["Period"] == 60
    assert lag["Threshold"] == 10 * config.segment_seconds
    assert lag["EvaluationPeriods"] == 5
    assert lag.get("DatapointsToAlarm", lag["EvaluationPeriods"]) == 5


def test_the_emulation_provisions_the_templates_and_skips_the_dashboard(
    templates: dict[str, Template],
) -> None:
    """The dashboard and the alarms have no part in a local run: the provisioner gives them
    placeholder names (moto is not asked for them), and the outputs naming them resolve."""
    import boto3
    from moto import mock_aws

    from vqa.local.provision import REGION, provision

    for stack, template in templates.items():
        with mock_aws():
            dep = provision(
                template.to_json(),
                stack=stack,
                client=lambda service: boto3.client(service, region_name=REGION),  # type: ignore[call-overload]
                create_functions=False,
            )
            outputs = dep.outputs()
            (dashboard,) = _of_type(template, "AWS::CloudWatch::Dashboard")
            assert dashboard in dep.resolver.placeholders
            assert outputs["DashboardName"] == dep.resolver.ref(dashboard)
            assert outputs["DashboardName"] in outputs["DashboardUrl"]
