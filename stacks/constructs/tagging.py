"""Cost allocation: every resource of a stack carries ``vqa:architecture=<name>``."""

from __future__ import annotations

import aws_cdk as cdk
import jsii
from constructs import IConstruct

ARCHITECTURE_TAG_KEY = "vqa:architecture"


@jsii.implements(cdk.IAspect)
class _TagProviderResources:
    """CDK's own custom-resource providers (e.g. auto-delete objects) are plain ``CfnResource``s
    that ``Tags.of`` does not reach; without the tag a sandbox's Cost Explorer could not
    attribute them to the architecture."""

    TYPES = ("AWS::IAM::Role", "AWS::Lambda::Function")

    def __init__(self, value: str) -> None:
        self.value = value

    def visit(self, node: IConstruct) -> None:
        if (
            isinstance(node, cdk.CfnResource)
            and node.cfn_resource_type in self.TYPES
            and not cdk.TagManager.is_taggable(node)
        ):
            node.add_property_override("Tags", [{"Key": ARCHITECTURE_TAG_KEY, "Value": self.value}])


def tag_architecture(stack: cdk.Stack, architecture: str) -> None:
    """Tag every resource in ``stack`` (providers included) with the architecture's name."""
    cdk.Tags.of(stack).add(ARCHITECTURE_TAG_KEY, architecture)
    cdk.Aspects.of(stack).add(_TagProviderResources(architecture))
