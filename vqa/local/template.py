"""The synthesized CloudFormation template, as the local emulation consumes it.

The emulation never re-describes the architecture: it synthesizes the CDK app with
:func:`stacks.build_app`, then reads the resources and the state machine definition from the
template and resolves the intrinsic functions in them (``Fn::Join``, ``Ref``, ``Fn::GetAtt``,
``Fn::Sub``) against the local (moto) resources it created.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vqa.errors import ConfigError

DISTRIBUTED_STACK = "VqaDistributed"


def synth_template(
    stack_name: str = DISTRIBUTED_STACK, *, vqa_context: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Synthesize the app (``cdk.json`` context, ``vqa`` keys overridden) and return one stack's
    template. Asset bundling is skipped: the emulation runs the handlers from this checkout."""
    overrides = json.dumps(dict(vqa_context or {}), sort_keys=True)
    return json.loads(_synth(stack_name, overrides))  # a fresh copy per caller


@functools.lru_cache(maxsize=8)
def _synth(stack_name: str, overrides: str) -> str:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")
    from stacks import build_app, load_context

    context = load_context()
    context["vqa"] = {**context.get("vqa", {}), **json.loads(overrides)}
    context["aws:cdk:bundling-stacks"] = []
    with tempfile.TemporaryDirectory(prefix="vqa-synth-") as outdir:
        assembly = build_app(context, outdir=outdir).synth()
        return json.dumps(assembly.get_stack_by_name(stack_name).template)


@dataclass
class Resolver:
    """Resolves intrinsic functions against local resources.

    ``refs``: logical id -> the value of ``Ref``; ``attrs``: logical id -> {attribute: value}.
    """

    region: str
    account: str
    partition: str = "aws"
    refs: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, dict[str, str]] = field(default_factory=dict)

    def pseudo(self) -> dict[str, str]:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": DISTRIBUTED_STACK,
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
