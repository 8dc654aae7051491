"""The front door: one HTTP API per stack, the same contract for both (vqa.api, docs/api.md).

A Lambda function URL with ``AWS_IAM`` auth rather than an API Gateway HTTP API: the API is three
routes for operators and tools that already hold AWS credentials, so SigV4 on a function URL
gives the same IAM authorisation (``lambda:InvokeFunctionUrl`` on this one function) with one
resource less, no stage, no per-request API Gateway charge, and nothing to keep in step between
a route table and the handler's router (vqa.api routes). What it gives up (usage plans, WAF,
custom domains) a sandbox A/B does not need; an HTTP API can be put in front later unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.constructs.lambda_defaults import VqaFunctions
from stacks.constructs.results import ResultsStore
from vqa import urlguard

HANDLER = "lambdas.api.handler.handler"


class FrontDoor(Construct):
    """``POST /streams``, ``GET`` / ``DELETE /streams/{id}`` for one stack.

    Give it the state machine (distributed) or the orchestrator function (monolith): the one
    way that stack starts a stream, granted with ``grant_start_execution`` / ``grant_invoke``.
    It reads and writes the results table (the idempotency record, the stop request, the status
    and defects it reports) and adds the stack output ``ApiUrl``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: VqaFunctions,
        results: ResultsStore,
        detectors: Sequence[str],
        allowed_origins: Sequence[str],
        source_bucket: s3.IBucket,
        state_machine: sfn.IStateMachine | None = None,
        orchestrator: lambda_.IFunction | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if (state_machine is None) == (orchestrator is None):
            raise ValueError("FrontDoor: give exactly one of state_machine or orchestrator")
        environment = {
            "VQA_TABLE": results.table.table_name,
            "VQA_DETECTORS": ",".join(detectors),
            "VQA_SOURCE_BUCKET": source_bucket.bucket_name,
            # It fetches nothing, but checks sources by the same rules and allow-list.
            **urlguard.environment(allowed_origins),
        }
        if state_machine is not None:
            environment["VQA_ARCHITECTURE"] = "distributed"
            environment["VQA_STATE_MACHINE_ARN"] = state_machine.state_machine_arn
        else:
            assert orchestrator is not None
            environment["VQA_ARCHITECTURE"] = "monolith"
            environment["VQA_ORCHESTRATOR_FUNCTION"] = orchestrator.function_name
        self.function = functions.function(
            "Api",
            handler=HANDLER,
            description="VQA front door: POST/GET/DELETE /streams (function URL, AWS_IAM)",
            memory_size=512,
            timeout=cdk.Duration.seconds(30),
            environment=environment,
        )
        # The idempotency record (conditional put, delete on a failed start), the stop request
        # (update), and the status, defects and alert records it reports (get, query).
        results.table.grant_read_write_data(self.function)
        if state_machine is not None:
            state_machine.grant_start_execution(self.function)
        if orchestrator is not None:
            # The unqualified function only (grant_invoke adds every version and alias, ":*").
            orchestrator.grant_invoke_latest_version(self.function)
        self.url = self.function.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM)
        # cfn-lint checks every region's resource spec, and a few (new regions, GovCloud, China)
        # lack AWS::Lambda::Url: deploy the stacks where function URLs exist (docs/api.md).
        url_resource = self.url.node.default_child
        assert isinstance(url_resource, cdk.CfnResource)
        url_resource.add_metadata("cfn-lint", {"config": {"ignore_checks": ["E3006"]}})
        cdk.CfnOutput(
            cdk.Stack.of(self),
            "ApiUrl",
            value=self.url.url,
            description="The front door (SigV4, service 'lambda'): POST /streams, "
            "GET and DELETE /streams/{id}; see docs/api.md",
        )
