"""ECS cluster on EC2: an Auto Scaling group capacity provider of ECS-optimised instances.

The instance type comes from context (``vqa.instance_type``); its architecture (x86_64 or
Graviton arm64) picks the ECS-optimised Amazon Linux 2023 AMI and the container image platform.
The group starts at ``min_instances`` (0 by default: nothing runs, nothing is billed, until a
shard service asks for capacity); ECS managed scaling adds instances for pending tasks and
managed termination protection keeps an instance that still runs a task from being scaled in.
"""

from __future__ import annotations

from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.capacity import ECS_RESERVED_MEMORY_MIB
from stacks.constructs.checkov import skip_checkov
from stacks.constructs.network import Network


class ComputeCluster(Construct):
    """The cluster, its Auto Scaling group (IMDSv2 only, encrypted EBS) and capacity provider."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: Network,
        instance_type: str,
        min_instances: int,
        max_instances: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.instance_type = ec2.InstanceType(instance_type)
        self.arm64 = self.instance_type.architecture == ec2.InstanceArchitecture.ARM_64
        hardware = ecs.AmiHardwareType.ARM if self.arm64 else ecs.AmiHardwareType.STANDARD

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=network.vpc,
            container_insights_v2=ecs.ContainerInsights.DISABLED,
        )

        role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="ECS container instance: registers with the cluster, pulls the image",
        )
        role.add_managed_policy(
            iam.ManagedPolicy.from_aws_managed_policy_name(
                "service-role/AmazonEC2ContainerServiceforEC2Role"
            )
        )
        # Session Manager instead of SSH: there is no inbound rule to open.
        role.add_managed_policy(
            iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")
        )

        launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            instance_type=self.instance_type,
            machine_image=ecs.EcsOptimizedImage.amazon_linux2023(hardware_type=hardware),
            user_data=ec2.UserData.for_linux(),
            role=role,
            security_group=network.instance_security_group,
            require_imdsv2=True,
            # Hop limit 1: containers on the bridge network cannot reach the instance metadata
            # (and the instance role); workers get the task role's credentials from ECS.
            http_put_response_hop_limit=1,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        30, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3
                    ),
                )
            ],
        )
        self.auto_scaling_group = autoscaling.AutoScalingGroup(
            self,
            "Asg",
            vpc=network.vpc,
            vpc_subnets=network.instance_subnets,
            launch_template=launch_template,
            min_capacity=min_instances,
            max_capacity=max_instances,
            new_instances_protected_from_scale_in=True,
            # Group metrics (free at 1-minute granularity) give `vqa experiment --aws` the
            # instance-hours actually run.
            group_metrics=[autoscaling.GroupMetrics.all()],
        )
        self.capacity_provider = ecs.AsgCapacityProvider(
            self,
            "Capacity",
            auto_scaling_group=self.auto_scaling_group,
            enable_managed_scaling=True,
            enable_managed_termination_protection=True,
            target_capacity_percent=100,
        )
        self.cluster.add_asg_capacity_provider(self.capacity_provider)
        # The agent registers memory less ECS_RESERVED_MEMORY, which the capacity check counts.
        self.auto_scaling_group.add_user_data(
            f"echo ECS_RESERVED_MEMORY={ECS_RESERVED_MEMORY_MIB} >> /etc/ecs/ecs.config"
        )
        skip_checkov(
            role.node.find_child("DefaultPolicy"),
            "CKV_AWS_111",
            "The ECS agent's instance policy CDK attaches for the capacity provider: "
            "logs:CreateLogStream/PutLogEvents on '*' for the awslogs driver, which writes task "
            "logs with the instance's credentials (the same grant as the AWS-managed "
            "AmazonEC2ContainerServiceforEC2Role); the other writes are scoped to this cluster.",
        )
