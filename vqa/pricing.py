"""The dated price table (``vqa/data/prices.json``): load, validate and look prices up.

Every figure the cost model uses comes from that one file; each entry carries the AWS page it was
read from and the date. A price reads as "``usd`` per ``per`` ``unit``", exactly as the page states
it (``0.025`` per ``1000`` state transitions), so the file can be checked against the page by eye;
:attr:`Price.unit_usd` is the price of one unit.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from vqa.errors import ConfigError

#: The prices the cost model needs in every region of the table: (service, name).
REQUIRED_PRICES: tuple[tuple[str, str], ...] = (
    ("stepfunctions", "standard_transitions"),
    ("stepfunctions", "express_requests"),
    ("stepfunctions", "express_duration"),
    ("lambda", "requests"),
    ("lambda", "duration_x86_64"),
    ("lambda", "duration_arm64"),
    ("s3", "put_class"),
    ("s3", "get_class"),
    ("s3", "storage"),
    ("sqs", "requests"),
    ("sns", "requests"),
    ("events", "custom_events"),
    ("dynamodb", "write_request_units"),
    ("dynamodb", "read_request_units"),
    ("logs", "ingestion"),
    ("xray", "traces_recorded"),
    ("ebs", "gp3_storage"),
)

#: The default service quotas the projection marks.
REQUIRED_QUOTAS: tuple[str, ...] = (
    "stepfunctions_state_transitions_per_second",
    "stepfunctions_standard_start_execution_per_second",
    "stepfunctions_express_start_execution_per_second",
    "lambda_concurrent_executions",
    "s3_put_per_second_per_prefix",
    "s3_get_per_second_per_prefix",
    "sqs_standard_requests_per_second",
    "sns_publish_per_second",
    "ec2_on_demand_standard_vcpus",
)

_SOURCE_PREFIXES = ("https://aws.amazon.com/", "https://docs.aws.amazon.com/")


class PricingError(ConfigError):
    """The price table is missing an entry or an entry is malformed."""


@dataclass(frozen=True)
class Price:
    """``usd`` per ``per`` ``unit`` (e.g. 0.025 per 1000 state transitions)."""

    service: str
    name: str
    usd: float
    per: float
    unit: str
    source: str
    as_of: str
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def unit_usd(self) -> float:
        """USD for one unit."""
        return self.usd / self.per

    def to_json(self) -> dict[str, Any]:
        return {
            "usd": self.usd,
            "per": self.per,
            "unit": self.unit,
            "source": self.source,
            "as_of": self.as_of,
            **({"note": self.note} if self.note else {}),
            **self.extra,
        }


@dataclass(frozen=True)
class InstanceType:
    """An EC2 instance type's on-demand hourly price and size (vCPUs, installed memory): the
    one instance table, read by the stack's capacity check and the cost model alike."""

    name: str
    usd_per_hour: float
    vcpus: int
    memory_gib: float
    architecture: str
    source: str
    as_of: str

    @property
    def memory_mib(self) -> int:
        """Installed memory in MiB."""
        return round(self.memory_gib * 1024)


@dataclass(frozen=True)
class Quota:
    """A default service quota; ``value`` None means the service states no practical limit."""

    name: str
    value: float | None
    note: str
    source: str
    as_of: str
    applies_to: str = ""


@dataclass(frozen=True)
class PriceTable:
    """One region's prices, instance types and default quotas."""

    region: str
    prices: dict[str, dict[str, Price]]
    instances: dict[str, InstanceType]
    quotas: dict[str, Quota]
    note: str = ""

    def price(self, service: str, name: str) -> Price:
        try:
            return self.prices[service][name]
        except KeyError:
            raise PricingError(f"price table {self.region}: no price {service}.{name}") from None

    def unit_usd(self, service: str, name: str) -> float:
        return self.price(service, name).unit_usd

    def instance(self, instance_type: str) -> InstanceType:
        try:
            return self.instances[instance_type]
        except KeyError:
            known = ", ".join(sorted(self.instances))
            raise PricingError(
                f"price table {self.region}: no EC2 price for {instance_type!r} (known: {known});"
                " add it to vqa/data/prices.json"
            ) from None

    def quota(self, name: str) -> Quota:
        try:
            return self.quotas[name]
        except KeyError:
            raise PricingError(f"price table {self.region}: no quota {name}") from None

    @property
    def as_of(self) -> str:
        """The oldest date any entry was read: the table is at least this current."""
        dates = [p.as_of for s in self.prices.values() for p in s.values()]
        dates += [i.as_of for i in self.instances.values()]
        dates += [q.as_of for q in self.quotas.values()]
        return min(dates)

    def summary(self) -> dict[str, Any]:
        return {"region": self.region, "as_of": self.as_of}

    def to_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "as_of": self.as_of,
            "prices": {
                s: {n: p.to_json() for n, p in entries.items()}
                for s, entries in self.prices.items()
            },
            "instances": {
                n: {
                    "usd_per_hour": i.usd_per_hour,
                    "vcpus": i.vcpus,
                    "memory_gib": i.memory_gib,
                    "architecture": i.architecture,
                    "source": i.source,
                    "as_of": i.as_of,
                }
                for n, i in self.instances.items()
            },
            "quotas": {
                n: {"value": q.value, "note": q.note, "source": q.source, "as_of": q.as_of}
                for n, q in self.quotas.items()
            },
        }


def default_path() -> Path:
    return Path(str(resources.files("vqa").joinpath("data/prices.json")))


def load_prices(region: str | None = None, *, path: Path | str | None = None) -> PriceTable:
    """Load and validate the price table for ``region`` (the file's default region if None)."""
    p = Path(path) if path is not None else default_path()
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise PricingError(f"{p}: cannot read the price table: {exc}") from None
    return parse_prices(data, region=region, origin=str(p))


def parse_prices(
    data: dict[str, Any], *, region: str | None = None, origin: str = "prices.json"
) -> PriceTable:
    """Validate the table's structure and build the :class:`PriceTable` for ``region``."""
    if not isinstance(data, dict) or not isinstance(data.get("regions"), dict):
        raise PricingError(f"{origin}: expected an object with 'regions'")
    region = region or data.get("default_region")
    if not region:
        raise PricingError(f"{origin}: no region given and no default_region")
    block = data["regions"].get(region)
    if not isinstance(block, dict):
        known = ", ".join(sorted(data["regions"]))
        raise PricingError(f"{origin}: no prices for region {region!r} (known: {known})")
    where = f"{origin} [{region}]"
    raw_prices = block.get("prices")
    if not isinstance(raw_prices, dict):
        raise PricingError(f"{where}: missing 'prices'")

    prices: dict[str, dict[str, Price]] = {}
    instances: dict[str, InstanceType] = {}
    for service, entries in raw_prices.items():
        if not isinstance(entries, dict):
            raise PricingError(f"{where}: prices.{service} must be an object")
        if service == "ec2":
            for name, e in (entries.get("instances") or {}).items():
                _check_entry(e, f"{where} ec2.instances.{name}")
                if e["per"] != 1 or e["unit"] != "instance-hours":
                    raise PricingError(f"{where} ec2.instances.{name}: price per 1 instance-hours")
                vcpus = e.get("vcpus")
                if not isinstance(vcpus, int) or vcpus <= 0:
                    raise PricingError(
                        f"{where} ec2.instances.{name}: vcpus must be a positive int"
                    )
                if not _is_number(e.get("memory_gib")) or e["memory_gib"] <= 0:
                    raise PricingError(
                        f"{where} ec2.instances.{name}: memory_gib must be a positive number"
                    )
                if e.get("architecture") not in ("x86_64", "arm64"):
                    raise PricingError(
                        f"{where} ec2.instances.{name}: architecture must be x86_64 or arm64"
                    )
                instances[name] = InstanceType(
                    name=name,
                    usd_per_hour=float(e["usd"]),
                    vcpus=vcpus,
                    memory_gib=float(e["memory_gib"]),
                    architecture=str(e["architecture"]),
                    source=e["source"],
                    as_of=e["as_of"],
                )
            continue
        prices[service] = {}
        for name, e in entries.items():
            _check_entry(e, f"{where} {service}.{name}")
            known_keys = {"usd", "per", "unit", "source", "as_of", "note"}
            prices[service][name] = Price(
                service=service,
                name=name,
                usd=float(e["usd"]),
                per=float(e["per"]),
                unit=str(e["unit"]),
                source=e["source"],
                as_of=e["as_of"],
                note=str(e.get("note", "")),
                extra={k: v for k, v in e.items() if k not in known_keys},
            )
    for service, name in REQUIRED_PRICES:
        if name not in prices.get(service, {}):
            raise PricingError(f"{where}: missing price {service}.{name}")
    if not instances:
        raise PricingError(f"{where}: no EC2 instance types")

    quotas: dict[str, Quota] = {}
    for name, q in (block.get("quotas") or {}).items():
        label = f"{where} quotas.{name}"
        if not isinstance(q, dict) or "value" not in q:
            raise PricingError(f"{label}: needs 'value' (null for no practical limit)")
        value = q["value"]
        if value is not None and (not _is_number(value) or value <= 0):
            raise PricingError(f"{label}: value must be a positive number or null")
        _check_source(q, label)
        quotas[name] = Quota(
            name=name,
            value=None if value is None else float(value),
            note=str(q.get("note", "")),
            source=q["source"],
            as_of=q["as_of"],
            applies_to=str(q.get("applies_to", "")),
        )
    for name in REQUIRED_QUOTAS:
        if name not in quotas:
            raise PricingError(f"{where}: missing quota {name}")
    return PriceTable(
        region=region,
        prices=prices,
        instances=instances,
        quotas=quotas,
        note=str(data.get("note", "")),
    )


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_entry(e: Any, label: str) -> None:
    if not isinstance(e, dict):
        raise PricingError(f"{label}: must be an object")
    if not _is_number(e.get("usd")) or e["usd"] < 0:
        raise PricingError(f"{label}: 'usd' must be a non-negative number")
    if not _is_number(e.get("per")) or e["per"] <= 0:
        raise PricingError(f"{label}: 'per' must be a positive number")
    if not isinstance(e.get("unit"), str) or not e["unit"]:
        raise PricingError(f"{label}: 'unit' must name what is priced")
    _check_source(e, label)


def _check_source(e: dict[str, Any], label: str) -> None:
    source = e.get("source")
    if not isinstance(source, str) or not source.startswith(_SOURCE_PREFIXES):
        raise PricingError(f"{label}: 'source' must be the AWS page the figure was read from")
    as_of = e.get("as_of")
    try:
        dt.date.fromisoformat(str(as_of))
    except ValueError:
        raise PricingError(f"{label}: 'as_of' must be the ISO date it was read") from None
