"""Checkov findings a resource accepts, recorded on the resource itself with the reason.

Checkov reads a CloudFormation resource's ``Metadata.checkov.skip`` list (``id`` + ``comment``)
and reports those checks as skipped, with the comment, instead of failed: the equivalent of a
cdk-nag acknowledgement, kept next to the resource it concerns.
"""

from __future__ import annotations

import aws_cdk as cdk
from constructs import IConstruct


def skip_checkov(construct: IConstruct, check_id: str, comment: str) -> None:
    """Record that ``construct``'s resource accepts Checkov check ``check_id``, and why."""
    resource = construct if isinstance(construct, cdk.CfnResource) else construct.node.default_child
    assert isinstance(resource, cdk.CfnResource), construct.node.path
    meta = resource.get_metadata("checkov") or {}
    skips = [*meta.get("skip", []), {"id": check_id, "comment": comment}]
    resource.add_metadata("checkov", {**meta, "skip": skips})
