"""Create a synthesized stack's AWS resources in moto, from the template.

A small provisioner of our own rather than moto's CloudFormation (``moto/cloudformation/
parsing.py``): moto's covers neither ``AWS::ECS::CapacityProvider``, ``AWS::DynamoDB::
GlobalTable`` nor CDK's custom resources, would try to create every VPC, Auto Scaling group and
custom-resource Lambda the run never uses, and keeps no record of which statements belong to
which role, which is what local IAM enforcement (:mod:`vqa.local.iam`) needs. Here each resource
type the runs use is created with the properties the template gives it (bucket encryption,
lifecycle and policy; queue visibility, redrive and encryption; table keys; topic KMS key; KMS
keys and aliases; IAM roles with inline, attached and managed policies; Lambda functions'
handler, memory, timeout and environment; ECS task definitions' command, environment, CPU and
memory), with ``Ref``/``Fn::GetAtt``/``Fn::Sub``/``Fn::Join`` resolved. Every other resource
(network, cluster, log groups, alarms, scaling) gets a placeholder name and ARN, so that
references to it still resolve.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vqa import urlguard
from vqa.errors import ConfigError
from vqa.local import iam
from vqa.local.template import Resolver, resources_of

#: moto's default account and the emulated region.
ACCOUNT = "123456789012"
REGION = "us-east-1"

#: Origins the local platform adds to a deployed function's or task's SSRF allow-list. The
#: emulation's live origins (vqa.live_origin, the tests, `vqa watch --arch` on a local origin)
#: serve on loopback, which the guard refuses in the VPC; here loopback is this machine, which
#: the user running the emulation owns. The guard itself stays on, as the templates set it, so
#: every other private, link-local (metadata) and reserved address is still refused.
LOCAL_ALLOWED_ORIGINS = ("127.0.0.0/8",)


def platform_environment(env: Mapping[str, str]) -> dict[str, str]:
    """A template's environment as the emulation runs it: where the template sets an SSRF
    allow-list (:data:`vqa.urlguard.ENV_ALLOWED`), loopback appended to it."""
    out = {k: str(v) for k, v in env.items()}
    if urlguard.ENV_ALLOWED in out:
        origins = urlguard.parse_origins(out[urlguard.ENV_ALLOWED])
        extra = [o for o in LOCAL_ALLOWED_ORIGINS if o not in origins]
        out[urlguard.ENV_ALLOWED] = ",".join([*origins, *extra])
    return out


#: The AWS-managed policies the stacks attach, as far as the calls a run checks are concerned
#: (these only write logs, which the emulation does not send through boto3).
_AWS_MANAGED_POLICY_STATEMENTS: dict[str, list[dict[str, Any]]] = {
    "service-role/AWSLambdaBasicExecutionRole": [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*",
        }
    ],
}


@dataclass(frozen=True)
class Function:
    """A Lambda function as the template defines it (tokens resolved)."""

    logical_id: str
    name: str
    arn: str
    handler: str
    runtime: str
    memory_mb: int
    timeout_s: int
    environment: dict[str, str]
    role: str  # logical id of its execution role


@dataclass(frozen=True)
class Container:
    """The container of an ECS task definition (tokens resolved)."""

    task_logical_id: str
    family: str
    entry_point: list[str] | None
    command: list[str] | None
    environment: dict[str, str]
    cpu: int
    memory_mb: int
    stop_timeout_s: int
    task_role: str  # logical id of the task role
    cluster: str  # name of the cluster its service runs in ("" when no service runs it)


@dataclass
class Deployment:
    """What :func:`provision` created, and the policies of every role."""

    stack: str
    template: dict[str, Any]
    resolver: Resolver
    account: iam.Account
    role_names: dict[str, str] = field(default_factory=dict)
    #: role logical id -> its identity policy statements, as the template writes them
    role_statements: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    functions: dict[str, Function] = field(default_factory=dict)
    containers: dict[str, Container] = field(default_factory=dict)

    def outputs(self) -> dict[str, str]:
        return {
            k: str(self.resolver.resolve(v["Value"]))
            for k, v in self.template.get("Outputs", {}).items()
        }

    def principal(self, role: str, *, ledger: iam.Ledger | None = None) -> iam.Principal:
        """The role with logical id ``role``, as local IAM evaluates it. Its statements are
        resolved now, so that they name resources created after the provisioning (the state
        machine)."""
        return iam.Principal(
            role=self.role_names[role],
            arn=self.resolver.get_att(role, "Arn"),
            statements=[self.resolver.resolve(st) for st in self.role_statements[role]],
            account=self.account,
            ledger=ledger or iam.Ledger(),
        )

    def function_by_handler(self, handler: str) -> Function:
        found = [f for f in self.functions.values() if f.handler == handler]
        if len(found) != 1:
            raise ConfigError(f"expected one function with handler {handler}, found {len(found)}")
        return found[0]


def provision(
    template: Mapping[str, Any],
    *,
    stack: str,
    client: Callable[[str], Any],
    suffix: str | None = None,
    create_functions: bool = True,
) -> Deployment:
    """Create ``template``'s resources through ``client(service)`` (moto); names end in
    ``suffix`` so that runs sharing one moto server never collide."""
    suffix = suffix or uuid.uuid4().hex[:8]
    resolver = Resolver(region=REGION, account=ACCOUNT, stack_name=stack)
    dep = Deployment(
        stack=stack,
        template=dict(template),
        resolver=resolver,
        account=iam.Account(region=REGION, account=ACCOUNT),
    )
    p = _Provisioner(dep, client, suffix)
    for logical_id, resource in template["Resources"].items():
        resolver.placeholder(logical_id, _placeholder_arn(resource["Type"], logical_id, suffix))
    p.keys()
    p.roles()
    p.buckets()
    p.tables()
    p.queues()
    p.topics()
    p.buses()
    p.resource_policies()
    p.key_policies()
    p.identity_policies()
    if create_functions:
        p.functions()
    p.task_definitions()
    return dep


def _placeholder_arn(type_: str, logical_id: str, suffix: str) -> str:
    service = type_.split("::")[1].lower() if type_.count("::") >= 2 else "custom"
    kind = type_.split("::")[-1].lower()
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{kind}/{logical_id}-{suffix}"


def _name(logical_id: str, suffix: str, limit: int) -> str:
    return f"{logical_id[: limit - len(suffix) - 1]}-{suffix}"


class _Provisioner:
    def __init__(self, dep: Deployment, client: Callable[[str], Any], suffix: str) -> None:
        self.dep = dep
        self.client = client
        self.suffix = suffix
        self.r = dep.resolver
        self.aliases: dict[str, str] = {}  # alias name -> key ARN

    def of(self, type_: str) -> dict[str, dict[str, Any]]:
        return resources_of(self.dep.template, type_)

    def props(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        return dict(resource.get("Properties", {}))

    def explicit(self, props: Mapping[str, Any], key: str) -> str | None:
        value = props.get(key)
        return None if value is None else str(self.r.resolve(value))

    # -- KMS ---------------------------------------------------------------------------------

    def keys(self) -> None:
        kms = None
        for logical_id in self.of("AWS::KMS::Key"):
            kms = kms or self.client("kms")
            meta = kms.create_key(Description=f"{self.dep.stack} {logical_id}")["KeyMetadata"]
            self.r.define(logical_id, meta["KeyId"], Arn=meta["Arn"], KeyId=meta["KeyId"])
        for logical_id, resource in self.of("AWS::KMS::Alias").items():
            props = self.props(resource)
            name = str(self.r.resolve(props["AliasName"]))
            target = str(self.r.resolve(props["TargetKeyId"]))
            key_arn = self._key_arn(target)
            self.aliases[name] = key_arn
            self.r.define(logical_id, name)

    def _key_arn(self, ref: str) -> str:
        """A key id, key ARN, alias name or alias ARN -> the key ARN, or AWS_MANAGED_KEY."""
        alias = ref.split(":", 5)[-1] if ref.startswith("arn:") and ":alias/" in ref else ref
        if alias.startswith("alias/aws/"):
            return iam.AWS_MANAGED_KEY
        if alias.startswith("alias/"):
            if alias not in self.aliases:
                raise ConfigError(f"template uses KMS alias {alias}, which it does not define")
            return self.aliases[alias]
        if ref.startswith("arn:"):
            return ref
        return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{ref}"

    def key_policies(self) -> None:
        for logical_id, resource in self.of("AWS::KMS::Key").items():
            policy = self.r.resolve(self.props(resource).get("KeyPolicy", {}))
            arn = self.r.get_att(logical_id, "Arn")
            self.dep.account.key_policies[arn] = list(policy.get("Statement", []))

    # -- IAM ---------------------------------------------------------------------------------

    def roles(self) -> None:
        client = self.client("iam")
        for logical_id, resource in self.of("AWS::IAM::Role").items():
            props = self.props(resource)
            name = self.explicit(props, "RoleName") or _name(logical_id, self.suffix, 64)
            trust = self.r.resolve(props.get("AssumeRolePolicyDocument", {}))
            arn = client.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))[
                "Role"
            ]["Arn"]
            self.r.define(logical_id, name, Arn=arn, RoleId=name)
            self.dep.role_names[logical_id] = name
            self.dep.role_statements[logical_id] = []

    def identity_policies(self) -> None:
        """Inline (``Policies``), managed (``ManagedPolicyArns``), ``AWS::IAM::Policy`` and
        customer ``AWS::IAM::ManagedPolicy`` statements, attached to their roles."""
        by_name = {name: lid for lid, name in self.dep.role_names.items()}

        def attach(role_ref: Any, statements: list[dict[str, Any]]) -> None:
            name = str(self.r.resolve(role_ref))
            if name in by_name:
                self.dep.role_statements[by_name[name]].extend(statements)

        for logical_id, resource in self.of("AWS::IAM::Role").items():
            props = self.props(resource)
            for policy in props.get("Policies", []):
                self.dep.role_statements[logical_id].extend(_statements(policy["PolicyDocument"]))
            for arn in self.r.resolve(props.get("ManagedPolicyArns", [])):
                managed = str(arn).split(":policy/", 1)[-1]
                self.dep.role_statements[logical_id].extend(
                    _AWS_MANAGED_POLICY_STATEMENTS.get(managed, [])
                )
        for type_ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for resource in self.of(type_).values():
                props = self.props(resource)
                statements = _statements(props["PolicyDocument"])
                for role in props.get("Roles", []):
                    attach(role, statements)

    # -- data stores -------------------------------------------------------------------------

    def buckets(self) -> None:
        s3 = self.client("s3")
        for logical_id, resource in self.of("AWS::S3::Bucket").items():
            props = self.props(resource)
            name = self.explicit(props, "BucketName") or _name(logical_id.lower(), self.suffix, 63)
            s3.create_bucket(Bucket=name)
            arn = f"arn:aws:s3:::{name}"
            encryption = self.r.resolve(props.get("BucketEncryption"))
            if encryption:
                rules = [
                    {
                        "ApplyServerSideEncryptionByDefault": r["ServerSideEncryptionByDefault"],
                        **(
                            {"BucketKeyEnabled": r["BucketKeyEnabled"]}
                            if "BucketKeyEnabled" in r
                            else {}
                        ),
                    }
                    for r in encryption.get("ServerSideEncryptionConfiguration", [])
                    if "ServerSideEncryptionByDefault" in r
                ]
                s3.put_bucket_encryption(
                    Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules}
                )
                for rule in encryption.get("ServerSideEncryptionConfiguration", []):
                    default = rule.get("ServerSideEncryptionByDefault", {})
                    if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse"):
                        key = default.get("KMSMasterKeyID")
                        self.dep.account.encryption[arn] = (
                            self._key_arn(str(key)) if key else iam.AWS_MANAGED_KEY
                        )
            lifecycle = props.get("LifecycleConfiguration")
            if lifecycle:
                s3.put_bucket_lifecycle_configuration(
                    Bucket=name,
                    LifecycleConfiguration={
                        "Rules": [_lifecycle_rule(r) for r in lifecycle["Rules"]]
                    },
                )
            self.r.define(
                logical_id,
                name,
                Arn=arn,
                DomainName=f"{name}.s3.amazonaws.com",
                RegionalDomainName=f"{name}.s3.{REGION}.amazonaws.com",
            )

    def tables(self) -> None:
        ddb = None
        tables = {
            **self.of("AWS::DynamoDB::Table"),
            **self.of("AWS::DynamoDB::GlobalTable"),
        }
        for logical_id, resource in tables.items():
            ddb = ddb or self.client("dynamodb")
            props = self.props(resource)
            name = self.explicit(props, "TableName") or _name(logical_id, self.suffix, 255)
            kwargs: dict[str, Any] = {
                "TableName": name,
                "KeySchema": props["KeySchema"],
                "AttributeDefinitions": props["AttributeDefinitions"],
                "BillingMode": props.get("BillingMode", "PROVISIONED"),
            }
            if kwargs["BillingMode"] == "PROVISIONED":
                kwargs["ProvisionedThroughput"] = props.get(
                    "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
                )
            for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
                if props.get(index_kind):
                    kwargs[index_kind] = props[index_kind]
            desc = ddb.create_table(**kwargs)["TableDescription"]
            sse = self.r.resolve(props.get("SSESpecification") or {})
            key = sse.get("KMSMasterKeyId")
            for replica in props.get("Replicas", []):
                key = key or replica.get("SSESpecification", {}).get("KMSMasterKeyId")
            if key:
                self.dep.account.encryption[desc["TableArn"]] = self._key_arn(
                    str(self.r.resolve(key))
                )
            self.r.define(
                logical_id,
                name,
                Arn=desc["TableArn"],
                StreamArn=desc.get("LatestStreamArn", f"{desc['TableArn']}/stream/local"),
            )

    def queues(self) -> None:
        pending = dict(self.of("AWS::SQS::Queue"))
        sqs = self.client("sqs") if pending else None
        while pending:
            ready = [
                lid
                for lid, res in pending.items()
                if not any(dep in pending for dep in _references(res.get("Properties", {})))
            ]
            if not ready:
                raise ConfigError(f"queues reference each other in a cycle: {sorted(pending)}")
            for logical_id in ready:
                props = self.props(pending.pop(logical_id))
                fifo = bool(props.get("FifoQueue"))
                name = self.explicit(props, "QueueName") or _name(
                    logical_id, self.suffix, 75 if fifo else 80
                ) + (".fifo" if fifo else "")
                attributes = _queue_attributes(self.r.resolve(props))
                assert sqs is not None
                url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
                arn = iam.queue_arn(url, REGION)
                if "KmsMasterKeyId" in props:
                    self.dep.account.encryption[arn] = self._key_arn(
                        str(self.r.resolve(props["KmsMasterKeyId"]))
                    )
                self.r.define(logical_id, url, Arn=arn, QueueName=name, QueueUrl=url)

    def topics(self) -> None:
        sns = None
        for logical_id, resource in self.of("AWS::SNS::Topic").items():
            sns = sns or self.client("sns")
            props = self.props(resource)
            name = self.explicit(props, "TopicName") or _name(logical_id, self.suffix, 256)
            attributes = {}
            if props.get("DisplayName"):
                attributes["DisplayName"] = str(self.r.resolve(props["DisplayName"]))
            if props.get("KmsMasterKeyId"):
                key = str(self.r.resolve(props["KmsMasterKeyId"]))
                attributes["KmsMasterKeyId"] = key
            arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
            if props.get("KmsMasterKeyId"):
                self.dep.account.encryption[arn] = self._key_arn(attributes["KmsMasterKeyId"])
            self.r.define(logical_id, arn, TopicArn=arn, TopicName=name)

    def buses(self) -> None:
        """EventBridge buses (the alerts bus): moto delivers their rules' targets too."""
        events = None
        for logical_id, resource in self.of("AWS::Events::EventBus").items():
            events = events or self.client("events")
            props = self.props(resource)
            # CDK names the bus from its construct path, the same in every synth: suffixed, so
            # that deployments sharing one moto server never collide (the stack refers to it
            # by Ref only).
            name = _name(self.explicit(props, "Name") or logical_id, self.suffix, 256)
            arn = events.create_event_bus(Name=name)["EventBusArn"]
            self.r.define(logical_id, name, Arn=arn, Name=name)

    def resource_policies(self) -> None:
        """Bucket, queue and topic policies, evaluated by local IAM (:mod:`vqa.local.iam`).

        They are not installed in moto: moto would see every request arrive over its plain-HTTP
        listener and apply the stacks' deny-non-TLS statements to all of them.
        """
        account = self.dep.account
        for resource in self.of("AWS::S3::BucketPolicy").values():
            props = self.props(resource)
            bucket = str(self.r.resolve(props["Bucket"]))
            doc = self.r.resolve(props["PolicyDocument"])
            account.resource_policies.setdefault(f"arn:aws:s3:::{bucket}", []).extend(
                _statements(doc)
            )
        for resource in self.of("AWS::SQS::QueuePolicy").values():
            props = self.props(resource)
            doc = self.r.resolve(props["PolicyDocument"])
            for url in self.r.resolve(props["Queues"]):
                account.resource_policies.setdefault(iam.queue_arn(url, REGION), []).extend(
                    _statements(doc)
                )
        for resource in self.of("AWS::SNS::TopicPolicy").values():
            props = self.props(resource)
            doc = self.r.resolve(props["PolicyDocument"])
            for arn in self.r.resolve(props["Topics"]):
                account.resource_policies.setdefault(arn, []).extend(_statements(doc))

    # -- compute -----------------------------------------------------------------------------

    def functions(self) -> None:
        lam = None
        for logical_id, resource in self.of("AWS::Lambda::Function").items():
            props = self.props(resource)
            runtime = str(props.get("Runtime", ""))
            if not runtime.startswith("python"):
                continue  # CDK's own providers (auto-delete objects...) are not part of a run
            role = _logical_of(props["Role"])
            env = platform_environment(
                self.r.resolve(props.get("Environment", {}).get("Variables", {}))
            )
            name = self.explicit(props, "FunctionName") or _name(logical_id, self.suffix, 64)
            lam = lam or self.client("lambda")
            fn = lam.create_function(
                FunctionName=name,
                Runtime=runtime,
                Role=self.r.get_att(role, "Arn"),
                Handler=props["Handler"],
                Code={"ZipFile": _placeholder_zip()},
                MemorySize=int(props.get("MemorySize", 128)),
                Timeout=int(props.get("Timeout", 3)),
                Environment={"Variables": {k: str(v) for k, v in env.items()}},
                Architectures=props.get("Architectures", ["x86_64"]),
            )
            self.r.define(logical_id, fn["FunctionName"], Arn=fn["FunctionArn"])
            self.dep.functions[logical_id] = Function(
                logical_id=logical_id,
                name=fn["FunctionName"],
                arn=fn["FunctionArn"],
                handler=str(props["Handler"]),
                runtime=runtime,
                memory_mb=int(props.get("MemorySize", 128)),
                timeout_s=int(props.get("Timeout", 3)),
                environment={k: str(v) for k, v in env.items()},
                role=role,
            )

    def task_definitions(self) -> None:
        for logical_id, resource in self.of("AWS::ECS::TaskDefinition").items():
            props = self.props(resource)
            containers = props.get("ContainerDefinitions", [])
            if len(containers) != 1:
                raise ConfigError(
                    f"task definition {logical_id}: the emulation runs one container per task"
                )
            c = containers[0]
            env = platform_environment(
                {str(e["Name"]): str(self.r.resolve(e["Value"])) for e in c.get("Environment", [])}
            )
            clusters = [
                str(self.r.resolve(svc["Properties"].get("Cluster", "")))
                for svc in self.of("AWS::ECS::Service").values()
                if svc["Properties"].get("TaskDefinition") == {"Ref": logical_id}
            ]
            family = f"{self.r.resolve(props.get('Family', logical_id))}-{self.suffix}"
            container_def: dict[str, Any] = {
                "name": str(c.get("Name", "main")),
                "image": str(self.r.resolve(c.get("Image", "local"))),
                "cpu": int(c.get("Cpu", 0)),
                "environment": [{"name": k, "value": v} for k, v in env.items()],
                "essential": True,
            }
            for cfn_key, api_key in (
                ("Memory", "memory"),
                ("MemoryReservation", "memoryReservation"),
                ("Command", "command"),
                ("EntryPoint", "entryPoint"),
                ("StopTimeout", "stopTimeout"),
            ):
                if cfn_key in c:
                    container_def[api_key] = c[cfn_key]
            task_role = _logical_of(props["TaskRoleArn"])
            arn = self.client("ecs").register_task_definition(
                family=family,
                taskRoleArn=self.r.get_att(task_role, "Arn"),
                networkMode=str(props.get("NetworkMode", "bridge")),
                containerDefinitions=[container_def],
            )["taskDefinition"]["taskDefinitionArn"]
            self.dep.containers[logical_id] = Container(
                task_logical_id=logical_id,
                family=family,
                entry_point=c.get("EntryPoint"),
                command=c.get("Command"),
                environment=env,
                cpu=int(c.get("Cpu", 0)),
                memory_mb=int(c.get("Memory") or c.get("MemoryReservation") or 0),
                stop_timeout_s=int(c.get("StopTimeout", 30)),
                task_role=task_role,
                cluster=clusters[0] if clusters else "",
            )
            self.r.define(logical_id, arn)


def _logical_of(value: Any) -> str:
    """The logical id in ``{"Fn::GetAtt": [id, "Arn"]}`` (a role reference)."""
    if isinstance(value, Mapping) and "Fn::GetAtt" in value:
        arg = value["Fn::GetAtt"]
        return str(arg[0] if isinstance(arg, list) else arg.split(".", 1)[0])
    raise ConfigError(f"expected a Fn::GetAtt reference to a role, got {value!r}")


def _references(value: Any) -> set[str]:
    if isinstance(value, list):
        return set().union(*(_references(v) for v in value)) if value else set()
    if not isinstance(value, Mapping):
        return set()
    out: set[str] = set()
    for key, arg in value.items():
        if key == "Ref" and isinstance(arg, str):
            out.add(arg)
        elif key == "Fn::GetAtt":
            out.add(str(arg[0] if isinstance(arg, list) else arg.split(".", 1)[0]))
        else:
            out |= _references(arg)
    return out


def _statements(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    statements = doc.get("Statement", [])
    return [dict(s) for s in (statements if isinstance(statements, list) else [statements])]


_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "FifoQueue",
    "ContentBasedDeduplication",
)


def _queue_attributes(props: Mapping[str, Any]) -> dict[str, str]:
    out = {k: _attr(props[k]) for k in _QUEUE_ATTRIBUTES if k in props}
    for key in ("RedrivePolicy", "RedriveAllowPolicy"):
        if key in props:
            out[key] = json.dumps(props[key])
    return out


def _attr(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ID": rule.get("Id", "rule"),
        "Status": rule["Status"],
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": rule["ExpirationInDays"]}
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
    return out


def _placeholder_zip() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("README", "Handlers run in-process (vqa.local.moto_lambda).\n")
    return buf.getvalue()
