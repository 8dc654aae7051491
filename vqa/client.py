"""A client of a stack's front door (vqa.api), for ``vqa submit/status/stop/defects``.

A deployed stack is found by name: its CloudFormation output ``ApiUrl``
(stacks/constructs/front_door.py) is the function URL, called with SigV4 (service ``lambda``, the
URL's region) and the caller's AWS credentials, as ``AWS_IAM`` function URLs require. Or an
endpoint is given (``--endpoint``): a local front door (``vqa serve``, on a loopback address) is
called unsigned; any other must be ``https://`` and is signed like a stack's.
"""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from vqa.errors import VqaError

#: The stack output that holds the front door's URL (stacks/constructs/front_door.py).
API_URL_OUTPUT = "ApiUrl"
#: Function URLs: https://<id>.lambda-url.<region>.on.aws/
_FUNCTION_URL_REGION = re.compile(r"\.lambda-url\.([a-z0-9-]+)\.on\.aws$")


class ClientError(VqaError):
    """The stack or the API refused; ``str()`` is one line, ``status`` the HTTP status if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(" ".join(message.split()))


def api_url(stack: str, *, cloudformation: Any) -> str:
    """The ``ApiUrl`` output of ``stack``; ClientError naming the stack otherwise."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except Exception as exc:  # botocore's ClientError / NoCredentialsError / endpoint errors
        raise ClientError(f"stack {stack}: cannot describe it ({exc})") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in (stacks[0].get("Outputs") or [])}
    if API_URL_OUTPUT not in outputs:
        raise ClientError(f"stack {stack}: no {API_URL_OUTPUT} output (deploy the front door)")
    return str(outputs[API_URL_OUTPUT])


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address literal (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ApiClient:
    """Calls to one front door, signed with ``credentials`` (botocore credentials, a
    session's); ``None`` for a local front door, which takes unsigned requests."""

    url: str
    credentials: Any
    region: str
    timeout: float = 30.0

    @classmethod
    def for_endpoint(cls, url: str, *, session: Any = None) -> ApiClient:
        """The front door at ``url``: unsigned on a loopback address (``vqa serve``); else
        ``https://`` only (the request is signed, credentials must not cross the network in
        clear) and signed with SigV4 like a stack's."""
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
        except ValueError as exc:
            raise ClientError(f"endpoint {url}: malformed URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not host:
            raise ClientError(f"endpoint {url}: expected an http(s):// URL")
        if parts.username is not None or parts.password is not None:
            raise ClientError(f"endpoint {parts.scheme}://{host}: credentials in the URL")
        if is_loopback(host):
            return cls(url, None, "")
        if parts.scheme != "https":
            raise ClientError(
                f"endpoint {url}: plain http is for a local front door (127.0.0.1) only; "
                "use https:// (or --stack NAME)"
            )
        import boto3

        session = session or boto3.Session()
        creds = session.get_credentials()
        if creds is None:
            raise ClientError(f"endpoint {url}: no AWS credentials to sign requests with")
        m = _FUNCTION_URL_REGION.search(host)
        region = m.group(1) if m else session.region_name
        if not region:
            raise ClientError(f"endpoint {url}: no AWS region (set AWS_REGION)")
        return cls(url, creds, region)

    @classmethod
    def for_stack(cls, stack: str, *, session: Any = None) -> ApiClient:
        import boto3

        session = session or boto3.Session()
        url = api_url(stack, cloudformation=session.client("cloudformation"))
        creds = session.get_credentials()
        if creds is None:
            raise ClientError(f"stack {stack}: no AWS credentials to sign requests with")
        m = _FUNCTION_URL_REGION.search(urlsplit(url).hostname or "")
        region = m.group(1) if m else session.region_name
        if not region:
            raise ClientError(f"stack {stack}: no AWS region (set AWS_REGION)")
        return cls(url, creds, region)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON answer of a 2xx response; ClientError with the API's message otherwise."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        url = self.url.rstrip("/") + path
        data = json.dumps(body).encode() if body is not None else None
        req = AWSRequest(
            method=method, url=url, data=data, headers={"content-type": "application/json"}
        )
        if self.credentials is not None:
            creds = self.credentials.get_frozen_credentials()
            SigV4Auth(creds, "lambda", self.region).add_auth(req)
        prepared = urllib.request.Request(url, data=data, method=method, headers=dict(req.headers))
        try:
            with urllib.request.urlopen(prepared, timeout=self.timeout) as resp:
                return dict(json.loads(resp.read() or b"{}"))
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                message = str(json.loads(raw).get("error") or json.loads(raw).get("Message"))
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")[:200] or exc.reason
            raise ClientError(f"{method} {path}: HTTP {exc.code}: {message}", exc.code) from None
        except (OSError, ValueError) as exc:
            raise ClientError(f"{method} {path}: {exc}") from None

    def submit(
        self,
        source: str,
        *,
        detectors: list[str] | None = None,
        thresholds: dict[str, dict[str, Any]] | None = None,
        client_token: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"source": source}
        if detectors:
            body["detectors"] = ",".join(detectors)
        if thresholds:
            body["thresholds"] = thresholds
        if client_token:
            body["client_token"] = client_token
        return self.call("POST", "/streams", body)

    def status(self, stream_id: str) -> dict[str, Any]:
        return self.call("GET", f"/streams/{quote(stream_id, safe='')}")

    def stop(self, stream_id: str) -> dict[str, Any]:
        return self.call("DELETE", f"/streams/{quote(stream_id, safe='')}")


def summary(view: dict[str, Any]) -> str:
    """A stream's status in a few lines (the GET /streams/{id} body)."""
    stop = "  (stop requested)" if view.get("stop_requested") else ""
    ended, still = len(view.get("defects", [])), len(view.get("open_defects", []))
    lines = [
        f"stream      {view['id']}",
        f"state       {view['state']}{stop}",
        f"source      {view.get('source', '')}",
        f"monitored   {view.get('monitored_seconds', 0.0):.1f} s"
        f"  (unmonitored {view.get('unmonitored_seconds', 0.0):.1f} s)",
        f"defects     {ended} ended, {still} open",
    ]
    if view.get("error"):
        lines.append(f"error       {view['error']}")
    return "\n".join(lines)


def defects_table(view: dict[str, Any]) -> str:
    rows = [("kind", "start", "end")]
    rows += [(d["kind"], f"{d['start']:.3f}", f"{d['end']:.3f}") for d in view.get("defects", [])]
    rows += [(d["kind"], f"{d['start']:.3f}", "(open)") for d in view.get("open_defects", [])]
    return "\n".join(f"{k:<12} {s:>10} {e:>10}" for k, s, e in rows)
