"""A shorter road to moto's S3 for the emulated handlers' PutObject and GetObject.

At per-frame granularity a live 360p25 stream makes about 125 S3 requests per stream-second
(every frame PUT once and read back by each video detector). Through botocore and moto each is a
full HTTP round trip inside the process (serialize, sign, moto's URL dispatch and XML response,
parse): about 10 ms of one core, so the emulation, not the architecture, fell behind the live
edge. :func:`attach` answers a client's plain ``PutObject(Bucket, Key, Body=bytes)`` and
``GetObject(Bucket, Key)`` from moto's S3 backend directly, in botocore's ``before-call`` hook.

What a deployment would see is unchanged: the same objects under the same keys in moto's bucket
(the backend applies the bucket's default encryption and versioning as on the HTTP path), every
call still goes through ``BaseClient._make_api_call`` (so :mod:`vqa.local.iam` checks it against
the caller's role) and still emits ``after-call`` (so a :class:`~vqa.meter.Meter` counts the
request and the bytes read); the bytes written, which the meter takes from the HTTP request on
the full path, are added here. Anything else (other parameters, a missing bucket or key, a body
that is not bytes) takes the full HTTP path, so errors are moto's own.
"""

from __future__ import annotations

import io
from datetime import UTC
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.response import StreamingBody

from vqa.local.provision import ACCOUNT
from vqa.meter import Meter

_PARAMS = "vqa_fast_s3"
_USER_META = "x-amz-meta-"


def _backend() -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[ACCOUNT]["aws"]


def _ok() -> AWSResponse:
    return AWSResponse("", 200, HTTPHeaders(), None)


def _metadata() -> dict[str, Any]:
    return {"HTTPStatusCode": 200, "HTTPHeaders": {}, "RetryAttempts": 0}


def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    # before-call sees the serialized request; the call's own parameters are kept from here.
    context[_PARAMS] = dict(params)


def _bucket(name: str) -> Any:
    from moto.s3.exceptions import MissingBucket

    try:
        return _backend().get_bucket(name)
    except MissingBucket:
        return None


def attach(client: Any, meter: Meter | None = None) -> Any:
    """Serve ``client``'s plain PutObject/GetObject from moto's backend (see the module doc)."""

    def put(model: Any, context: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
        params = context.get(_PARAMS, {})
        body = params.get("Body")
        if set(params) != {"Bucket", "Key", "Body"} or not isinstance(body, bytes | bytearray):
            return None
        if _bucket(params["Bucket"]) is None:
            return None
        key = _backend().put_object(params["Bucket"], params["Key"], bytes(body))
        if meter is not None:
            meter.merge({"bytes": {"s3_put": len(body)}})
        parsed = {"ETag": key.etag, "ResponseMetadata": _metadata()}
        if key.encryption:
            parsed["ServerSideEncryption"] = key.encryption
        return _ok(), parsed

    def get(model: Any, context: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
        params = context.get(_PARAMS, {})
        if set(params) != {"Bucket", "Key"} or _bucket(params["Bucket"]) is None:
            return None
        key = _backend().get_object(params["Bucket"], params["Key"])
        if key is None:
            return None  # moto's NoSuchKey, as the full path answers it
        value = key.value
        parsed = {
            "Body": StreamingBody(io.BytesIO(value), len(value)),
            "ContentLength": len(value),
            "ETag": key.etag,
            # moto keeps naive UTC; botocore parses the HTTP date to an aware one.
            "LastModified": key.last_modified.replace(tzinfo=UTC),
            "AcceptRanges": "bytes",
            "ContentType": key.metadata.get("content-type", "binary/octet-stream"),
            "Metadata": {
                k.removeprefix(_USER_META): v
                for k, v in key.metadata.items()
                if k.startswith(_USER_META)
            },
            "ResponseMetadata": _metadata(),
        }
        return _ok(), parsed

    events = client.meta.events
    for op, answer in (("PutObject", put), ("GetObject", get)):
        events.register(f"before-parameter-build.s3.{op}", _keep_params)
        events.register_first(f"before-call.s3.{op}", answer)
    return client
