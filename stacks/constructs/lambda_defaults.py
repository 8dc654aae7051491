"""Lambda defaults, defined once: every VQA function states only what differs."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.constructs.packaging import LambdaPackaging


class VqaFunctions(Construct):
    """A factory of Python 3.12 functions sharing one code asset and one dependencies layer.

    Defaults: the configured architecture, X-Ray tracing, JSON logs into a log group with a
    one-week retention (the group is a resource of this stack, so it is tagged and destroyed
    with it), and the shared layer.
    """

    RUNTIME = lambda_.Runtime.PYTHON_3_12

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
        self.packaging = LambdaPackaging(self, "Packaging", architecture=architecture)
        self._removal = (
            cdk.RemovalPolicy.DESTROY if destroy_on_delete else cdk.RemovalPolicy.RETAIN
        )
        self._log_retention = log_retention
        self.functions: list[lambda_.Function] = []

    def function(
        self,
        construct_id: str,
        *,
        handler: str,
        description: str,
        memory_size: int,
        timeout: cdk.Duration,
        environment: dict[str, str] | None = None,
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=self._log_retention,
            removal_policy=self._removal,
        )
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
            environment=environment or {},
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            log_group=log_group,
        )
        self.functions.append(fn)
        return fn
