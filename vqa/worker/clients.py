"""The boto3 clients a worker talks to, created once per process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vqa.meter import Meter


@dataclass
class Clients:
    """The boto3 clients a worker uses, each attached to the meter when there is one."""

    sqs: Any
    dynamodb: Any
    s3: Any
    sns: Any | None
    #: EventBridge (the alerts bus); None where a caller builds Clients without it.
    events: Any | None = None

    @classmethod
    def create(
        cls,
        *,
        meter: Meter | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> Clients:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(region_name=region)
        cfg = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=4)

        def make(service: str) -> Any:
            client = session.client(service, endpoint_url=endpoint_url, config=cfg)  # type: ignore[call-overload]
            return meter.attach(client) if meter is not None else client

        return cls(
            sqs=make("sqs"),
            dynamodb=make("dynamodb"),
            s3=make("s3"),
            sns=make("sns"),
            events=make("events"),
        )
