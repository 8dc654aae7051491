"""The monolith's VPC: free when idle, no inbound path from the internet.

By default there is no NAT gateway (about $32/month each, idle or not): the container instances
sit in public subnets with a public IP for ECR, SQS, SNS and CloudWatch Logs, and their security
group has no inbound rule at all. Gateway endpoints (free) keep S3 and DynamoDB traffic inside
the AWS network. ``private_subnets=True`` (cdk.json context ``vqa.private_subnets``) puts the
instances in private subnets behind one NAT gateway instead, for accounts whose policy forbids
public IPs.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct


class Network(Construct):
    """VPC, the instances' security group (egress only) and S3/DynamoDB gateway endpoints."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        private_subnets: bool,
        max_azs: int = 2,
        destroy_on_delete: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        subnets = [ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC)]
        if private_subnets:
            subnets.append(
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS
                )
            )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.40.0.0/16"),
            max_azs=max_azs,
            nat_gateways=1 if private_subnets else 0,
            subnet_configuration=subnets,
            restrict_default_security_group=True,
        )
        self.instance_subnets = ec2.SubnetSelection(
            subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS
            if private_subnets
            else ec2.SubnetType.PUBLIC
        )
        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        self.vpc.add_gateway_endpoint("DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB)

        # Rejected-traffic flow logs only: what a security review asks for, pennies when idle.
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=logs.RetentionDays.TWO_WEEKS,
            removal_policy=cdk.RemovalPolicy.DESTROY
            if destroy_on_delete
            else cdk.RemovalPolicy.RETAIN,
        )
        self.vpc.add_flow_log(
            "Rejected",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )

        self.instance_security_group = ec2.SecurityGroup(
            self,
            "InstanceSg",
            vpc=self.vpc,
            description="VQA container instances: no inbound, HTTPS out to AWS APIs and sources",
            allow_all_outbound=True,
        )
