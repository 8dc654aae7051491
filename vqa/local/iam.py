"""IAM enforced locally: every AWS call a handler, the orchestrator or a worker makes is checked
against the policies the synthesized template attaches to *that* function's or task's role.

moto's own access control (``moto/iam/access_control.py``) computes resources only for a few
services and checks identity policies only, so it cannot say whether a detector may read a key
prefix or a publisher may use a topic's KMS key. The check here sits on the client side instead,
in ``botocore.client.BaseClient._make_api_call`` (operation name and parameters already parsed):
:func:`required` maps the operation to its IAM action(s) and resource ARN(s), plus the KMS action
on the key of an encrypted resource (S3 SSE-KMS GET needs ``kms:Decrypt``, PUT
``kms:GenerateDataKey``; SQS/SNS with a customer-managed key likewise), and :func:`evaluate`
applies the policy evaluation logic: an explicit ``Deny`` anywhere wins; else an ``Allow`` in the
role's identity policies or in the resource's policy naming the role; KMS keys also need their
key policy to allow the role directly or to delegate to the account (``:root``). Wildcards
``*``/``?`` match as IAM matches them (actions case-insensitively).

Who is calling: a context variable (:data:`PRINCIPAL`) for the handlers that run in this process
(the distributed emulation runs every function in one process, concurrently); the state
machine's role for moto's Step Functions interpreter (:func:`state_machine_acting_as`); for worker
subprocesses a process-wide principal installed at interpreter start by
``vqa/local/ecs_task/sitecustomize.py`` from the file named by ``VQA_LOCAL_IAM_POLICY``, so the
worker's own code is untouched. Calls without a principal (the emulator provisioning resources,
uploading the source, reading the results as the user) are not checked.

A denied call raises ``ClientError`` ``AccessDenied`` as AWS would, *and* is recorded in the
run's ledger: code that swallows errors (a best-effort status write) still fails the run, with a
message naming role, action and resource.

Transport: the emulation talks plain HTTP to moto on 127.0.0.1, while in AWS every SDK call goes
over TLS. ``aws:SecureTransport`` is evaluated as ``true`` (the stacks' deny-non-TLS bucket and
queue policies then deny nothing, as in AWS); the local hop is the emulator's, not the client's.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from vqa.errors import ConfigError, VqaError

#: Environment of a worker process (set by the emulation, not by the task definition): the JSON
#: file of its role's resolved policies, and where to append denied calls.
POLICY_ENV = "VQA_LOCAL_IAM_POLICY"
DENIALS_ENV = "VQA_LOCAL_IAM_DENIALS"
#: Marks the KMS keys whose policy AWS writes (``alias/aws/<service>``): that policy allows every
#: principal of the account to use the key through the service, so no identity grant is needed.
AWS_MANAGED_KEY = "aws-managed"

#: IAM action prefix of a botocore service name, where they differ.
_PREFIX = {"stepfunctions": "states"}


class IamDenied(VqaError):
    """A local run made AWS calls its role would be denied."""


@dataclass(frozen=True)
class Denial:
    role: str
    action: str
    resource: str
    reason: str

    def __str__(self) -> str:
        return f"role {self.role} may not {self.action} on {self.resource} ({self.reason})"


@dataclass
class Account:
    """What the account knows beyond the role: resource policies, encryption, key policies."""

    region: str
    account: str
    #: resource ARN (bucket, queue, topic, table) -> policy statements
    resource_policies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: resource ARN -> KMS key ARN of a customer-managed key, or AWS_MANAGED_KEY
    encryption: dict[str, str] = field(default_factory=dict)
    #: KMS key ARN -> key policy statements
    key_policies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    _compiled: dict[str, list[_Statement]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def compiled(self, kind: str, arn: str) -> list[_Statement]:
        """The resource policy (``kind="resource"``) or key policy (``"key"``) of ``arn``,
        compiled once (the account's policies do not change once provisioned)."""
        cache_key = f"{kind}:{arn}"
        if cache_key not in self._compiled:
            policies = self.key_policies if kind == "key" else self.resource_policies
            self._compiled[cache_key] = [_Statement.of(s) for s in policies.get(arn, [])]
        return self._compiled[cache_key]

    def to_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "account": self.account,
            "resource_policies": self.resource_policies,
            "encryption": self.encryption,
            "key_policies": self.key_policies,
        }


class Ledger:
    """Denied calls of one run (thread-safe); optionally appended to a file (worker processes)."""

    def __init__(self, path: str | None = None) -> None:
        self._lock = threading.Lock()
        self.denials: list[Denial] = []
        self.path = path

    def record(self, denial: Denial) -> None:
        with self._lock:
            self.denials.append(denial)
            if self.path:
                with open(self.path, "a") as fh:
                    fh.write(json.dumps(denial.__dict__) + "\n")

    @staticmethod
    def read(path: Path) -> list[Denial]:
        if not path.exists():
            return []
        return [Denial(**json.loads(ln)) for ln in path.read_text().splitlines() if ln.strip()]


def raise_if_denied(denials: list[Denial]) -> None:
    """Fail the run when any call was denied (first denial in the message, count after)."""
    if denials:
        more = f" (and {len(denials) - 1} more denied calls)" if len(denials) > 1 else ""
        raise IamDenied(f"local IAM: {denials[0]}{more}")


@dataclass
class Principal:
    """A role as the template defines it: its name, ARN and identity policy statements."""

    role: str
    arn: str
    statements: list[dict[str, Any]]
    account: Account
    ledger: Ledger = field(default_factory=Ledger)
    _compiled: tuple[list[dict[str, Any]], list[_Statement]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def compiled(self) -> list[_Statement]:
        """The identity statements, compiled once (again if ``statements`` is replaced)."""
        if self._compiled is None or self._compiled[0] is not self.statements:
            self._compiled = (self.statements, [_Statement.of(s) for s in self.statements])
        return self._compiled[1]

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "arn": self.arn,
            "statements": self.statements,
            "account": self.account.to_json(),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], *, ledger: Ledger | None = None) -> Principal:
        acc = doc["account"]
        return cls(
            role=doc["role"],
            arn=doc["arn"],
            statements=list(doc["statements"]),
            account=Account(
                region=acc["region"],
                account=acc["account"],
                resource_policies=dict(acc["resource_policies"]),
                encryption=dict(acc["encryption"]),
                key_policies=dict(acc["key_policies"]),
            ),
            ledger=ledger or Ledger(),
        )

    def authorize(self, service: str, operation: str, params: Mapping[str, Any]) -> None:
        """Raise ``ClientError(AccessDenied)`` (and record it) unless every need is allowed."""
        for action, resource in required(service, operation, params, self.account):
            allowed, reason = evaluate(self, action, resource)
            if not allowed:
                denial = Denial(self.role, action, resource, reason)
                self.ledger.record(denial)
                raise _access_denied(operation, self, denial)


#: The principal of the code running in this context (a handler invocation), if any.
PRINCIPAL: ContextVar[Principal | None] = ContextVar("vqa_local_principal", default=None)
#: The principal of the whole process (a worker subprocess), if any.
_PROCESS_PRINCIPAL: Principal | None = None
#: The state machine's role: the principal of moto's Step Functions interpreter, whose worker
#: threads make the service-integration calls (Lambda invoke, DynamoDB putItem, ...) with clients
#: signed by this access key (``moto/stepfunctions/parser/asl/utils/boto_client.py``).
_INTERPRETER_PRINCIPAL: Principal | None = None
MOTO_INTERPRETER_ACCESS_KEY = "ak"


@contextmanager
def acting_as(principal: Principal | None) -> Iterator[None]:
    """AWS calls made in this context are checked against ``principal``'s policies."""
    token = PRINCIPAL.set(principal)
    try:
        yield
    finally:
        PRINCIPAL.reset(token)


def _access_denied(operation: str, principal: Principal, denial: Denial) -> Exception:
    from botocore.exceptions import ClientError

    message = (
        f"User: {principal.arn} is not authorized to perform: {denial.action} on resource: "
        f"{denial.resource} because {denial.reason} (local IAM)"
    )
    response: Any = {
        "Error": {"Code": "AccessDenied", "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 403},
    }
    return ClientError(response, operation)


@contextmanager
def state_machine_acting_as(principal: Principal) -> Iterator[None]:
    """Calls of moto's Step Functions interpreter are checked against ``principal`` (the state
    machine's role) in this block. One state machine at a time per process."""
    global _INTERPRETER_PRINCIPAL
    install()
    previous, _INTERPRETER_PRINCIPAL = _INTERPRETER_PRINCIPAL, principal
    try:
        yield
    finally:
        _INTERPRETER_PRINCIPAL = previous


def _is_interpreter(client: Any) -> bool:
    credentials = getattr(getattr(client, "_request_signer", None), "_credentials", None)
    return getattr(credentials, "access_key", None) == MOTO_INTERPRETER_ACCESS_KEY


_install_lock = threading.Lock()


def install() -> None:
    """Check every botocore call made with a principal (idempotent, process-wide)."""
    from botocore.client import BaseClient

    with _install_lock:
        original = BaseClient._make_api_call  # type: ignore[attr-defined]
        if getattr(original, "_vqa_local_iam", False):
            return

        def _make_api_call(self: Any, operation_name: str, api_params: Any) -> Any:
            principal = PRINCIPAL.get() or _PROCESS_PRINCIPAL
            if principal is None and _INTERPRETER_PRINCIPAL is not None and _is_interpreter(self):
                principal = _INTERPRETER_PRINCIPAL
            if principal is not None:
                principal.authorize(
                    self.meta.service_model.service_name, operation_name, api_params
                )
            return original(self, operation_name, api_params)

        _make_api_call._vqa_local_iam = True  # type: ignore[attr-defined]
        BaseClient._make_api_call = _make_api_call  # type: ignore[attr-defined]


def install_from_env() -> None:
    """In a worker process: act as the role in ``$VQA_LOCAL_IAM_POLICY`` for every call."""
    global _PROCESS_PRINCIPAL
    path = os.environ.get(POLICY_ENV)
    if not path:
        return
    doc = json.loads(Path(path).read_text())
    _PROCESS_PRINCIPAL = Principal.from_json(doc, ledger=Ledger(os.environ.get(DENIALS_ENV)))
    install()


# --------------------------------------------------------------------------------------------
# Operation -> (action, resource)
# --------------------------------------------------------------------------------------------

_S3_ACTIONS = {
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "DeleteObject": "s3:DeleteObject",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
}
#: S3 operations that read or write object data: the KMS action their SSE-KMS key needs.
_S3_KMS = {
    "GetObject": "kms:Decrypt",
    "PutObject": "kms:GenerateDataKey",
    "CreateMultipartUpload": "kms:GenerateDataKey",
    "UploadPart": "kms:GenerateDataKey",
}
_SQS_BATCH = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
_SQS_KMS = {"SendMessage": ("kms:GenerateDataKey",), "ReceiveMessage": ("kms:Decrypt",)}
#: SNS publishers need both to use a topic's customer-managed key (AWS SNS SSE docs).
_SNS_KMS = {"Publish": ("kms:GenerateDataKey", "kms:Decrypt")}


def queue_arn(url: str, region: str) -> str:
    """``https://sqs.<region>.amazonaws.com/<account>/<name>`` (or moto's) -> the queue's ARN."""
    parts = urlparse(url).path.strip("/").split("/")
    if len(parts) != 2:
        raise ConfigError(f"local IAM: not a queue URL: {url}")
    account, name = parts
    return f"arn:aws:sqs:{region}:{account}:{name}"


def required(
    service: str, operation: str, params: Mapping[str, Any], account: Account
) -> list[tuple[str, str]]:
    """The (action, resource ARN) pairs IAM evaluates for one API call."""
    region, acct = account.region, account.account
    needs: list[tuple[str, str]] = []
    kms: tuple[str, ...] = ()
    if service == "s3":
        bucket = params.get("Bucket", "")
        bucket_arn = f"arn:aws:s3:::{bucket}"
        if operation == "DeleteObjects":
            keys = [o["Key"] for o in params.get("Delete", {}).get("Objects", [])]
            return [("s3:DeleteObject", f"{bucket_arn}/{k}") for k in keys]
        if operation == "CopyObject":
            src = unquote(
                str(params["CopySource"])
                if isinstance(params["CopySource"], str)
                else f"{params['CopySource']['Bucket']}/{params['CopySource']['Key']}"
            )
            src_arn = f"arn:aws:s3:::{src.lstrip('/').split('?')[0]}"
            needs.append(("s3:GetObject", src_arn))
            needs += _kms_needs(
                account, f"arn:aws:s3:::{src_arn[13:].split('/')[0]}", ("kms:Decrypt",)
            )
            action = "s3:PutObject"
            kms = ("kms:GenerateDataKey",)
        else:
            action = _S3_ACTIONS.get(operation, f"s3:{operation}")
            kms = (_S3_KMS[operation],) if operation in _S3_KMS else ()
        resource = f"{bucket_arn}/{params['Key']}" if "Key" in params else bucket_arn
        needs.append((action, resource))
        needs += _kms_needs(account, bucket_arn, kms)
        return needs
    if service == "dynamodb":
        if operation in ("BatchWriteItem", "BatchGetItem"):
            tables = list(params.get("RequestItems", {}))
        elif "TableName" in params:
            tables = [params["TableName"]]
        else:
            raise ConfigError(f"local IAM: no resource known for dynamodb {operation}")
        for table in tables:
            arn = f"arn:aws:dynamodb:{region}:{acct}:table/{table}"
            if params.get("IndexName"):
                arn += f"/index/{params['IndexName']}"
            needs.append((f"dynamodb:{operation}", arn))
            needs += _kms_needs(account, arn.split("/index/")[0], ("kms:Decrypt",))
        return needs
    if service == "sqs":
        base = _SQS_BATCH.get(operation, operation)
        if "QueueUrl" in params:
            arn = queue_arn(params["QueueUrl"], region)
        elif "QueueName" in params:
            arn = f"arn:aws:sqs:{region}:{acct}:{params['QueueName']}"
        else:
            raise ConfigError(f"local IAM: no resource known for sqs {operation}")
        return [(f"sqs:{base}", arn), *_kms_needs(account, arn, _SQS_KMS.get(base, ()))]
    if service == "sns":
        topic = str(params.get("TopicArn") or params.get("TargetArn") or "")
        if not topic:
            raise ConfigError(f"local IAM: no resource known for sns {operation}")
        return [
            (f"sns:{operation}", topic),
            *_kms_needs(account, topic, _SNS_KMS.get(operation, ())),
        ]
    if service == "events" and operation == "PutEvents":
        # One action per entry's bus (no bus: the account's default one).
        buses = {str(e.get("EventBusName") or "default") for e in params.get("Entries", [])}
        return [
            (
                "events:PutEvents",
                b if b.startswith("arn:") else f"arn:aws:events:{region}:{acct}:event-bus/{b}",
            )
            for b in sorted(buses)
        ]
    if service == "stepfunctions":
        machine = str(params.get("stateMachineArn") or params.get("executionArn") or "")
        if not machine:
            raise ConfigError(f"local IAM: no resource known for states {operation}")
        return [(f"states:{operation}", machine)]
    if service == "lambda":
        name = str(params.get("FunctionName", ""))
        arn = (
            name if name.startswith("arn:") else (f"arn:aws:lambda:{region}:{acct}:function:{name}")
        )
        return [("lambda:InvokeFunction" if operation == "Invoke" else f"lambda:{operation}", arn)]
    raise ConfigError(
        f"local IAM: the emulation does not know the resources of {service} {operation}"
    )


def _kms_needs(account: Account, resource: str, actions: tuple[str, ...]) -> list[tuple[str, str]]:
    key = account.encryption.get(resource)
    if not key or key == AWS_MANAGED_KEY:
        return []
    return [(a, key) for a in actions]


# --------------------------------------------------------------------------------------------
# Policy evaluation
# --------------------------------------------------------------------------------------------


def evaluate(principal: Principal, action: str, resource: str) -> tuple[bool, str]:
    """IAM's decision for one (action, resource) request by ``principal``, and why."""
    account = principal.account
    context = {
        "aws:securetransport": "true",  # see the module docstring: SDK calls use TLS in AWS
        "aws:principalarn": principal.arn,
        "aws:principalaccount": account.account,
    }
    identity = principal.compiled()
    resource_policy = account.compiled("resource", _policy_key(resource))
    root = f"arn:aws:iam::{account.account}:root"

    for stmt in identity:
        if not stmt.allow and _applies(stmt, action, resource, context):
            return False, "an explicit deny in an identity-based policy"
    for stmt in resource_policy:
        if (
            not stmt.allow
            and _principal_matches(stmt, principal.arn, root, deny=True)
            and _applies(stmt, action, resource, context)
        ):
            return False, "an explicit deny in a resource-based policy"

    identity_allows = any(
        stmt.allow and _applies(stmt, action, resource, context) for stmt in identity
    )
    if action.startswith("kms:"):
        if resource not in account.key_policies:
            return False, f"the key {resource} is not one the template defines"
        direct = delegated = False
        for stmt in account.compiled("key", resource):
            if not _applies(stmt, action, resource, context):
                continue
            if not stmt.allow and _principal_matches(stmt, principal.arn, root, deny=True):
                return False, "an explicit deny in the key policy"
            if stmt.allow:
                direct |= _principal_matches(stmt, principal.arn, root, deny=False)
                delegated |= root in stmt.names
        if direct or (delegated and identity_allows):
            return True, ""
        return False, "neither the key policy nor (delegated to IAM) an identity policy allows it"

    if identity_allows:
        return True, ""
    if any(
        stmt.allow
        and _principal_matches(stmt, principal.arn, root, deny=False)
        and _applies(stmt, action, resource, context)
        for stmt in resource_policy
    ):
        return True, ""
    return False, f"no identity-based policy allows the {action} action"


def _policy_key(resource: str) -> str:
    """Where a resource's policy is kept: an object's is its bucket's."""
    if resource.startswith("arn:aws:s3:::"):
        return "arn:aws:s3:::" + resource[len("arn:aws:s3:::") :].split("/", 1)[0]
    return resource


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _wildcard(pattern: str, value: str, *, case: bool) -> bool:
    return _pattern((pattern,), case=case).match(value) is not None


@functools.lru_cache(maxsize=4096)
def _pattern(patterns: tuple[str, ...], *, case: bool) -> re.Pattern[str]:
    """One regex for a list of IAM patterns: ``*`` and ``?`` are wildcards, nothing else is
    (fnmatch's ``[]`` sets are escaped)."""
    parts = [fnmatch.translate(p.replace("[", "[[]")) for p in patterns]
    return re.compile("|".join(f"(?:{p})" for p in parts), 0 if case else re.IGNORECASE)


_NOTHING = re.compile(r"(?!)")


@dataclass(frozen=True)
class _Statement:
    """A policy statement with its patterns compiled (evaluated on every AWS call)."""

    allow: bool
    actions: re.Pattern[str] | None
    not_actions: re.Pattern[str] | None
    resources: re.Pattern[str] | None
    not_resources: re.Pattern[str] | None
    condition: Mapping[str, Any]
    principal: Any
    names: frozenset[str]

    @classmethod
    def of(cls, stmt: Mapping[str, Any]) -> _Statement:
        def compiled(key: str, *, case: bool) -> re.Pattern[str] | None:
            if key not in stmt:
                return None
            return _pattern(tuple(str(v) for v in _as_list(stmt[key])), case=case)

        actions, not_actions = compiled("Action", case=False), compiled("NotAction", case=False)
        resources = compiled("Resource", case=True)
        not_resources = compiled("NotResource", case=True)
        principal = stmt.get("Principal")
        names = (
            frozenset(str(p) for p in _as_list(principal.get("AWS", [])))
            if isinstance(principal, Mapping)
            else frozenset()
        )
        return cls(
            allow=stmt.get("Effect") == "Allow",
            # A statement without Action/NotAction (or Resource/NotResource) matches nothing.
            actions=actions if actions or not_actions else _NOTHING,
            not_actions=not_actions,
            resources=resources if resources or not_resources else _NOTHING,
            not_resources=not_resources,
            condition=dict(stmt.get("Condition", {})),
            principal=principal,
            names=names,
        )


def _applies(stmt: _Statement, action: str, resource: str, ctx: dict[str, str]) -> bool:
    if stmt.actions is not None:
        if not stmt.actions.match(action):
            return False
    elif stmt.not_actions is not None and stmt.not_actions.match(action):
        return False
    if stmt.resources is not None:
        if not stmt.resources.match(resource):
            return False
    elif stmt.not_resources is not None and stmt.not_resources.match(resource):
        return False
    return not stmt.condition or _conditions_hold(stmt.condition, ctx)


def _principal_matches(stmt: _Statement, arn: str, root: str, *, deny: bool) -> bool:
    """Whether a resource/key policy statement's principal is the role.

    An account's ``:root`` in an Allow delegates to the account's IAM policies (it does not
    grant by itself); in a Deny it covers every principal of the account.
    """
    if stmt.principal == "*":
        return True
    return "*" in stmt.names or arn in stmt.names or (deny and root in stmt.names)


_OPERATORS = {
    "StringEquals": lambda want, got: got in want,
    "StringNotEquals": lambda want, got: got not in want,
    "StringLike": lambda want, got: any(_wildcard(w, got, case=True) for w in want),
    "StringNotLike": lambda want, got: not any(_wildcard(w, got, case=True) for w in want),
    "ArnEquals": lambda want, got: got in want,
    "ArnNotEquals": lambda want, got: got not in want,
    "ArnLike": lambda want, got: any(_wildcard(w, got, case=True) for w in want),
    "ArnNotLike": lambda want, got: not any(_wildcard(w, got, case=True) for w in want),
    "Bool": lambda want, got: got.lower() in [w.lower() for w in want],
}


def _conditions_hold(conditions: Mapping[str, Any], ctx: dict[str, str]) -> bool:
    for operator, tests in conditions.items():
        if_exists = operator.endswith("IfExists")
        base = operator.removesuffix("IfExists")
        if base == "Null":
            for key, want in tests.items():
                missing = key.lower() not in ctx
                if str(want).lower() != str(missing).lower():
                    return False
            continue
        if base not in _OPERATORS:
            raise ConfigError(f"local IAM: condition operator {operator} is not evaluated")
        for key, want in tests.items():
            got = ctx.get(key.lower())
            if got is None:
                # IAM: a missing key satisfies only the IfExists and the negated operators.
                if if_exists or "Not" in base:
                    continue
                return False
            if not _OPERATORS[base]([str(w) for w in _as_list(want)], got):
                return False
    return True
