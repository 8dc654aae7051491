"""The results store (DynamoDB) and alerts topic (SNS): one format for both architectures."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct


class ResultsStore(Construct):
    """Defects keyed by ``stream`` (partition) and ``defect`` (sort: ``kind#start``), so a retried
    segment or a resumed worker rewrites the same item instead of duplicating it; stream status
    items use sort key ``#status``, alert records (:mod:`vqa.alerts`) ``alert#<id>#<phase>``.
    Defect alerts go to an SNS topic encrypted with a rotated customer-managed key that
    CloudWatch alarms may use too (for people), and to a custom EventBridge bus (for machines:
    source ``vqa``, detail-type ``Defect Started`` / ``Defect Ended``) that users route with
    rules. A publisher needs ``table.grant_read_write_data`` (the alert record's conditional put,
    read and mark), ``topic.grant_publish`` and ``bus.grant_put_events_to``."""

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
        # A customer-managed key, not the AWS-managed alias/aws/sns: CloudWatch alarms publish to
        # this topic too, and only a key whose policy allows the CloudWatch service principal
        # lets them (the AWS-managed key's policy cannot be changed).
        self.topic_key = kms.Key(
            self,
            "AlertsKey",
            description="VQA alerts topic: defect alerts and CloudWatch alarm notifications",
            enable_key_rotation=True,
            removal_policy=removal,
        )
        cloudwatch = iam.ServicePrincipal("cloudwatch.amazonaws.com")
        self.topic_key.grant(cloudwatch, "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(
            self,
            "Alerts",
            display_name="VQA defect alerts",
            master_key=self.topic_key,
            enforce_ssl=True,
        )
        # Every role this topic is granted to (topic.grant_publish) also gets kms:GenerateDataKey*
        # on this one key: cdk-nag flags the action group wherever that role is in the stack.
        cdk.Validations.of(cdk.Stack.of(self)).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions::AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
                reason="From topic.grant_publish: publishing to the alerts topic needs a data "
                "key of its customer-managed key, and only of that key (resource-scoped).",
            )
        )
        # The topic policy (which enforce_ssl creates, replacing SNS's default one) must let
        # CloudWatch publish; alarms of this account only (confused-deputy guard). The key
        # statement above stays unconditioned, as the CloudWatch guide's key policy is.
        iam.Grant.add_to_principal_or_resource(
            grantee=cloudwatch.with_conditions(
                {"StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID}}
            ),
            actions=["sns:Publish"],
            resource_arns=[self.topic.topic_arn],
            resource=self.topic,
        )
        # A bus of our own, not the account's default: rules and permissions for VQA's events
        # stay apart from everything else in the account. CDK derives its name from the path.
        self.bus = events.EventBus(self, "AlertsBus")
        self.bus.apply_removal_policy(removal)
