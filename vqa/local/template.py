"""The synthesized CloudFormation template, as the local emulation consumes it.

The emulation never re-describes the architecture: it synthesizes the CDK app with
:func:`stacks.build_app`, then reads the resources and the state machine definition from the
template and resolves the intrinsic functions in them (``Fn::Join``, ``Ref``, ``Fn::GetAtt``,
``Fn::Sub``) against the local (moto) resources it created.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqa.errors import ConfigError

DISTRIBUTED_STACK = "VqaDistributed"
MONOLITH_STACK = "VqaMonolith"
ROOT = Path(__file__).resolve().parents[2]


def synth_template(
    stack_name: str = DISTRIBUTED_STACK, *, vqa_context: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Synthesize the app (``cdk.json`` context, ``vqa`` keys overridden) and return one stack's
    template. Asset bundling is skipped: the emulation runs the handlers from this checkout."""
    overrides = json.dumps(dict(vqa_context or {}), sort_keys=True)
    return json.loads(_synth(stack_name, overrides))  # a fresh copy per caller


def config_context(config: Any) -> dict[str, Any]:
    """The ``vqa`` context keys of a :class:`stacks.config.VqaConfig`, a mapping, or ``None``
    (no override: ``cdk.json`` as it is)."""
    import dataclasses

    if config is None:
        return {}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dict(json.loads(json.dumps(dataclasses.asdict(config))))  # tuples -> lists
    if isinstance(config, Mapping):
        return dict(config)
    raise ConfigError(f"config must be a VqaConfig or a mapping, not {type(config).__name__}")


#: Synthesized templates on disk, keyed by everything synth reads (see :func:`_inputs_key`).
SYNTH_CACHE = ROOT / ".cache" / "synth"


def _inputs_key(overrides: str) -> str:
    """A hash of the synth inputs: the stacks' code, app.py, cdk.json, the overrides and the
    CDK library version (asset hashes of the handler code do not matter to the emulation)."""
    from importlib.metadata import version

    digest = hashlib.sha256(overrides.encode())
    digest.update(version("aws-cdk-lib").encode())
    for path in sorted([ROOT / "cdk.json", ROOT / "app.py", *(ROOT / "stacks").rglob("*.py")]):
        if path.is_file():
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


@functools.lru_cache(maxsize=8)
def _synth(stack_name: str, overrides: str) -> str:
    cached = SYNTH_CACHE / f"{_inputs_key(overrides)}.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        return json.dumps(json.loads(cached.read_text())[stack_name])
    from stacks import build_app, load_context

    context = load_context()
    context["vqa"] = {**context.get("vqa", {}), **json.loads(overrides)}
    context["aws:cdk:bundling-stacks"] = []
    with tempfile.TemporaryDirectory(prefix="vqa-synth-") as outdir:
        assembly = build_app(context, outdir=outdir).synth()
        templates = {s.stack_name: s.template for s in assembly.stacks}
    with contextlib.suppress(OSError):
        # Written whole and renamed: concurrent sessions never read half a file.
        SYNTH_CACHE.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(templates))
        tmp.replace(cached)
    if stack_name not in templates:
        raise ConfigError(f"the app has no stack {stack_name}")
    return json.dumps(templates[stack_name])


@dataclass
class Resolver:
    """Resolves intrinsic functions against local resources.

    ``refs``: logical id -> the value of ``Ref``; ``attrs``: logical id -> {attribute: value}.
    """

    region: str
    account: str
    partition: str = "aws"
    stack_name: str = DISTRIBUTED_STACK
    refs: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Resources the emulation does not create: any attribute resolves to a placeholder.
    placeholders: set[str] = field(default_factory=set)

    def define(self, logical_id: str, ref: str, **attrs: str) -> None:
        """A created resource: its ``Ref`` value and attributes."""
        self.placeholders.discard(logical_id)
        self.refs[logical_id] = ref
        self.attrs[logical_id] = {**self.attrs.get(logical_id, {}), **attrs}

    def placeholder(self, logical_id: str, arn: str) -> None:
        """A resource not (yet) created: references to it resolve to placeholder values."""
        self.placeholders.add(logical_id)
        self.refs[logical_id] = arn.rsplit("/", 1)[-1]
        self.attrs[logical_id] = {"Arn": arn}

    def pseudo(self) -> dict[str, str]:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
        }

    def ref(self, name: str) -> str:
        pseudo = self.pseudo()
        if name in pseudo:
            return pseudo[name]
        if name not in self.refs:
            raise ConfigError(f"template Ref to {name}, which the emulation did not create")
        return self.refs[name]

    def get_att(self, name: str, attr: str) -> str:
        try:
            return self.attrs[name][attr]
        except KeyError:
            if name in self.placeholders:
                return f"{self.refs[name]}.{attr}"
            raise ConfigError(
                f"template Fn::GetAtt {name}.{attr}, which the emulation did not create"
            ) from None

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                name, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(name, attr)
            if key == "Fn::Join":
                sep, parts = arg
                return str(sep).join(str(self.resolve(p)) for p in parts)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(self.resolve(items)[int(self.resolve(index))])
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(str(sep))
            if key.startswith("Fn::"):
                raise ConfigError(f"the emulation does not resolve {key}")
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def replace(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                return self.get_att(*name.split(".", 1))
            return self.ref(name)

        return re.sub(r"\$\{([^}!]+)\}", replace, text)


def resources_of(template: Mapping[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    """``{logical id: resource}`` of one resource type."""
    return {k: r for k, r in template["Resources"].items() if r["Type"] == type_}


def state_machine(template: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The template's only state machine: its logical id and properties."""
    machines = resources_of(template, "AWS::StepFunctions::StateMachine")
    if len(machines) != 1:
        raise ConfigError(f"expected one state machine in the template, found {len(machines)}")
    ((logical_id, resource),) = machines.items()
    return logical_id, resource["Properties"]


def definition(template: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
    """The state machine's Amazon States Language definition with every token resolved."""
    _, props = state_machine(template)
    raw = props.get("DefinitionString")
    if raw is None:
        raise ConfigError("the state machine has no DefinitionString")
    text = resolver.resolve(raw)
    return dict(json.loads(text))
