"""The results store (DynamoDB) and alerts topic (SNS): one format for both architectures."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct


class ResultsStore(Construct):
    """Defects keyed by ``stream`` (partition) and ``defect`` (sort: ``kind#start``), so a retried
    segment or a resumed worker rewrites the same item instead of duplicating it; stream status
    items use sort key ``#status``. Alerts go to an encrypted SNS topic."""

    def __init__(self, scope: Construct, construct_id: str, *, destroy_on_delete: bool) -> None:
        super().__init__(scope, construct_id)
        removal = cdk.RemovalPolicy.DESTROY if destroy_on_delete else cdk.RemovalPolicy.RETAIN
        self.table = dynamodb.TableV2(
            self,
            "Defects",
            partition_key=dynamodb.Attribute(name="stream", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="defect", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=removal,
        )
        self.topic_key = kms.Alias.from_alias_name(self, "SnsKey", "alias/aws/sns")
        self.topic = sns.Topic(
            self,
            "Alerts",
            display_name="VQA defect alerts",
            master_key=self.topic_key,
            enforce_ssl=True,
        )
