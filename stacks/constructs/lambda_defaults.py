"""Lambda defaults, defined once: every VQA function states only what differs."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.constructs.packaging import LambdaPackaging
from vqa import metrics

#: Powertools' settings in every function's environment (vqa.observability passes the same
#: values; Powertools' own code paths, such as its cold-start metric, read these).
POWERTOOLS_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": metrics.SERVICE,
    "POWERTOOLS_METRICS_NAMESPACE": metrics.NAMESPACE,
}

#: The one Lambda runtime of the project: every function (the distributed handlers and the
#: monolith's orchestrator) and the dependencies layer, whose cp312 wheels are those the worker
#: image (python:3.12) installs from the same lock. Changing it is a lock change, not a default.
RUNTIME = lambda_.Runtime.PYTHON_3_12
#: cdk-nag's AwsSolutions-L1 ("use the latest runtime"), acknowledged wherever a function is made.
RUNTIME_ACKNOWLEDGMENT = cdk.Acknowledgment(
    id="AwsSolutions::AwsSolutions-L1",
    reason=f"Pinned to {RUNTIME.name} for parity: the dependencies layer holds the lock's cp312 "
    "wheels of PyAV and numpy, the same files the monolith's python:3.12 worker image installs; "
    "moving runtime is a lock change, made for every function and the image at once.",
)


class VqaFunctions(Construct):
    """A factory of Python 3.12 functions sharing one code asset and one dependencies layer.

    Defaults: the configured architecture, X-Ray tracing, JSON logs into a log group with a
    one-week retention (the group is a resource of this stack, so it is tagged and destroyed
    with it), Powertools' service and metrics namespace, and the shared layer.
    """

    RUNTIME = RUNTIME

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        architecture: str,
        destroy_on_delete: bool,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_WEEK,
    ) -> None:
        super().__init__(scope, construct_id)
        self.packaging = LambdaPackaging(
            self, "Packaging", architecture=architecture, runtime=self.RUNTIME
        )
        self._removal = cdk.RemovalPolicy.DESTROY if destroy_on_delete else cdk.RemovalPolicy.RETAIN
        self._log_retention = log_retention
        self.functions: list[lambda_.Function] = []
        cdk.Validations.of(self).acknowledge(
            RUNTIME_ACKNOWLEDGMENT,
            cdk.Acknowledgment(
                id="AwsSolutions::AwsSolutions-IAM5[Resource::*]",
                reason="X-Ray tracing: xray:PutTraceSegments/PutTelemetryRecords have no "
                "resource-level permissions, so AWS requires Resource '*'.",
            ),
        )

    def function(
        self,
        construct_id: str,
        *,
        handler: str,
        description: str,
        memory_size: int,
        timeout: cdk.Duration,
        environment: dict[str, str] | None = None,
        reserved_concurrency: int | None = None,
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=self._log_retention,
            removal_policy=self._removal,
        )
        # An own role instead of the AWSLambdaBasicExecutionRole managed policy: the function may
        # write to its own log group and nothing else beyond what the stack grants.
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"VQA function {construct_id}",
        )
        log_group.grant_write(role)
        fn = lambda_.Function(
            self,
            construct_id,
            runtime=self.RUNTIME,
            architecture=self.packaging.architecture,
            code=self.packaging.code,
            layers=[self.packaging.deps_layer],
            handler=handler,
            description=description,
            memory_size=memory_size,
            timeout=timeout,
            environment={**POWERTOOLS_ENVIRONMENT, **(environment or {})},
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            log_group=log_group,
            role=role,
            reserved_concurrent_executions=reserved_concurrency,
        )
        self.functions.append(fn)
        return fn
