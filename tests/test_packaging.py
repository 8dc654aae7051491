"""One lock, one runtime: the Lambda layer, the worker image and the venv run the same pins.

- ``requirements.lock`` is the install file of the layer (``packaging.LOCK``) and of the image
  (the Dockerfile's ``pip install -r``), fully hashed; this venv has its av/numpy/boto3 versions;
- every function in both templates runs the layer's compatible runtime, whose Python is the
  image's base image Python;
- a synth with the layer cached runs no pip; a miss that cannot reach the index fails with one
  message naming the command that fills the cache.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from stacks import build_app, load_context
from stacks.constructs import packaging
from stacks.constructs.lambda_defaults import RUNTIME

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "containers" / "Dockerfile"


def _docker_instructions(word: str) -> list[str]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [
        line.split(None, 1)[1]
        for line in text.splitlines()
        if line.strip() and line.split(None, 1)[0].upper() == word
    ]


def _image_install() -> list[str]:
    (run,) = [a for a in _docker_instructions("RUN") if a.startswith("pip install")]
    return shlex.split(run)


def _image_python() -> str:
    """``3.12`` from ``FROM .../python:3.12-slim-bookworm``."""
    image = _docker_instructions("FROM")[-1].split()[0]
    match = re.search(r"/python:(\d+\.\d+)", image)
    assert match, image
    return match.group(1)


# ---- one lock ------------------------------------------------------------------------------


def test_the_layer_the_image_and_the_venv_install_the_same_lock() -> None:
    install = _image_install()
    image_lock = ROOT / install[install.index("-r") + 1]
    assert image_lock.resolve() == packaging.LOCK.resolve()
    assert "--require-hashes" in install

    pins = packaging.locked_versions()
    assert {"av", "numpy", "boto3", "botocore", "tqdm"} <= set(pins)
    # The venv (Python 3.11 here) runs the very versions the layer and the image install.
    for name in ("av", "numpy", "boto3"):
        assert md.version(name) == pins[name], name


def test_every_pin_of_the_lock_is_hashed() -> None:
    text = packaging.LOCK.read_text()
    blocks = re.split(r"\n(?=\S)", text)
    pinned = [b for b in blocks if "==" in b.split("\n", 1)[0] and not b.startswith("#")]
    assert len(pinned) == len(packaging.locked_versions())
    for block in pinned:
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", block), block.split()[0]


# ---- one runtime ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    ctx = load_context()
    ctx["aws:cdk:bundling-stacks"] = []  # the templates only
    app = build_app(ctx, outdir=str(tmp_path_factory.mktemp("cdk.out")))
    return {s.stack_name: s.template for s in app.synth().stacks}


def test_every_function_runs_the_layers_runtime_and_the_images_python(
    templates: dict[str, dict[str, Any]],
) -> None:
    (layer,) = [
        r
        for r in templates["VqaDistributed"]["Resources"].values()
        if r["Type"] == "AWS::Lambda::LayerVersion"
    ]
    (layer_runtime,) = layer["Properties"]["CompatibleRuntimes"]
    assert layer_runtime == f"python{_image_python()}" == RUNTIME.name
    for stack, template in templates.items():
        runtimes = {
            name: r["Properties"]["Runtime"]
            for name, r in template["Resources"].items()
            if r["Type"] == "AWS::Lambda::Function"
        }
        ours = {n: rt for n, rt in runtimes.items() if rt.startswith("python")}
        assert ours, stack
        assert set(ours.values()) == {layer_runtime}, (stack, ours)
        # The rest are CDK's own Node.js custom-resource handlers (S3 auto-delete), not ours.
        assert all("CustomResourceProvider" in n for n in runtimes.keys() - ours.keys())


# ---- synth offline -------------------------------------------------------------------------


def _synth_packaging(outdir: Path) -> Path:
    """Synthesize a stack holding only the packaging construct, bundling on; the layer's
    asset directory."""
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "Packaging")
    packaging.LambdaPackaging(stack, "P", architecture="x86_64", runtime=RUNTIME)
    assembly = app.synth()
    template = assembly.get_stack_by_name("Packaging").template
    (layer,) = [
        r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::LayerVersion"
    ]
    return outdir / f"asset.{layer['Properties']['Content']['S3Key'].removesuffix('.zip')}"


def test_a_cached_layer_synthesizes_without_pip(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(packaging, "CACHE_DIR", tmp_path / "cache")
    tree = packaging.deps_dir("x86_64", packaging.python_version(RUNTIME))
    (tree / "marker").mkdir(parents=True)
    (tree / "marker" / "__init__.py").write_text("CACHED = True\n")

    def no_pip(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"pip ran on a cache hit: {args}")

    monkeypatch.setattr(subprocess, "run", no_pip)
    asset = _synth_packaging(tmp_path / "out")
    assert (asset / "python" / "marker" / "__init__.py").read_text() == "CACHED = True\n"


def test_the_cache_key_follows_the_lock_the_architecture_and_python() -> None:
    key = packaging.deps_cache_key("av==1\n", "x86_64", "3.12")
    assert key != packaging.deps_cache_key("av==2\n", "x86_64", "3.12")
    assert key != packaging.deps_cache_key("av==1\n", "arm64", "3.12")
    assert key != packaging.deps_cache_key("av==1\n", "x86_64", "3.13")


def test_a_cache_miss_offline_fails_with_one_message_naming_the_fix(
    tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    monkeypatch.setattr(packaging, "CACHE_DIR", tmp_path / "cache")
    # No package index: a closed local port, and no pip configuration (no local wheel links).
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    with pytest.raises(SystemExit) as exc:
        _synth_packaging(tmp_path / "out")
    message = str(exc.value.code)
    assert "\n" not in message
    assert message.startswith("error: cannot build the Lambda dependencies layer (x86_64")
    assert "python -m stacks.constructs.packaging --architecture x86_64" in message
    # Nothing half-built is left to be mistaken for a cached layer.
    assert not any(p.name == "python" for p in (tmp_path / "cache").rglob("*"))


def test_the_layer_command_reports_the_cached_tree(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(packaging, "CACHE_DIR", tmp_path / "cache")
    tree = packaging.deps_dir("arm64", packaging.python_version(RUNTIME))
    tree.mkdir(parents=True)
    (tree / "x.py").write_bytes(b"0" * 2048)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip ran"))
    assert packaging.main(["--architecture", "arm64"]) == 0


def test_python_version_of_the_runtime() -> None:
    assert packaging.python_version(RUNTIME) == RUNTIME.name.removeprefix("python")
    with pytest.raises(ValueError):
        from aws_cdk import aws_lambda as lambda_

        packaging.python_version(lambda_.Runtime.NODEJS_20_X)
    assert json.dumps(packaging.locked_versions())  # plain data
