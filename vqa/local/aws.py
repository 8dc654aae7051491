"""Generic moto helpers shared by the local emulations: resources from a template, clients.

Everything here runs inside ``moto.mock_aws()``: buckets, tables and topics are created from the
synthesized template's resources (so their keys and names follow the stack), and the clients the
handlers and workers use carry a :class:`vqa.meter.Meter`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from vqa.local.template import Resolver, resources_of
from vqa.meter import Meter

REGION = "us-east-1"
#: moto's default account.
ACCOUNT = "123456789012"
REPO_ROOT = Path(__file__).resolve().parents[2]


def ensure_repo_on_path() -> None:
    """``stacks`` and ``lambdas`` live beside ``vqa`` in the repository, not in the wheel."""
    root = str(REPO_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)


#: Checksums only where an API requires them: with the default ("when_supported") every PUT
#: is sent aws-chunked with a CRC trailer that moto decodes in pure Python, an emulator cost that
#: would dominate local runs. It changes no request count and no byte count that is billed.
_CONFIG = Config(
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
)


def client(service: str, *, meter: Meter | None = None) -> Any:
    """A boto3 client for the emulated region, metered when ``meter`` is given."""
    c = boto3.client(service, region_name=REGION, config=_CONFIG)  # type: ignore[call-overload]
    return meter.attach(c) if meter is not None else c


def physical_name(logical_id: str, suffix: str) -> str:
    """A valid, unique-per-run bucket/table/topic name derived from the logical id."""
    return f"{logical_id.lower()[:40]}-{suffix}"


def create_buckets(template: Mapping[str, Any], resolver: Resolver, *, suffix: str) -> None:
    s3 = client("s3")
    for logical_id, resource in resources_of(template, "AWS::S3::Bucket").items():
        name = physical_name(logical_id, suffix)
        s3.create_bucket(Bucket=name)
        props = resource.get("Properties", {})
        if "LifecycleConfiguration" in props:
            s3.put_bucket_lifecycle_configuration(
                Bucket=name,
                LifecycleConfiguration={
                    "Rules": [_lifecycle_rule(r) for r in props["LifecycleConfiguration"]["Rules"]]
                },
            )
        resolver.refs[logical_id] = name
        resolver.attrs[logical_id] = {"Arn": f"arn:aws:s3:::{name}"}


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ID": rule.get("Id", "rule"),
        "Status": rule["Status"],
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": rule["ExpirationInDays"]}
    return out


def create_tables(template: Mapping[str, Any], resolver: Resolver, *, suffix: str) -> None:
    ddb = client("dynamodb")
    tables = {
        **resources_of(template, "AWS::DynamoDB::Table"),
        **resources_of(template, "AWS::DynamoDB::GlobalTable"),
    }
    for logical_id, resource in tables.items():
        props = resource["Properties"]
        name = physical_name(logical_id, suffix)
        ddb.create_table(
            TableName=name,
            KeySchema=props["KeySchema"],
            AttributeDefinitions=props["AttributeDefinitions"],
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
        )
        arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
        resolver.refs[logical_id] = name
        resolver.attrs[logical_id] = {"Arn": arn}


def create_topics(template: Mapping[str, Any], resolver: Resolver, *, suffix: str) -> None:
    sns = client("sns")
    for logical_id in resources_of(template, "AWS::SNS::Topic"):
        arn = sns.create_topic(Name=physical_name(logical_id, suffix))["TopicArn"]
        resolver.refs[logical_id] = arn
        resolver.attrs[logical_id] = {"TopicArn": arn, "TopicName": arn.rsplit(":", 1)[1]}


def create_role(name: str, *, service: str) -> str:
    """An IAM role the service may assume (moto checks that functions and machines have one)."""
    iam = client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        ],
    }
    return str(
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    )


def create_data_stores(template: Mapping[str, Any], *, suffix: str) -> Resolver:
    """Buckets, tables and topics of ``template``; the returned resolver knows their names."""
    resolver = Resolver(region=REGION, account=ACCOUNT)
    create_buckets(template, resolver, suffix=suffix)
    create_tables(template, resolver, suffix=suffix)
    create_topics(template, resolver, suffix=suffix)
    return resolver
