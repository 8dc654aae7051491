"""Packaging of ``vqa`` + PyAV + numpy for the Lambda runtime, without Docker at synth.

Two assets:

- a **dependencies layer** (PyAV with its bundled FFmpeg, numpy) shared by every function. It is
  built by ``pip install --platform manylinux_2_28_<arch> --only-binary=:all: --python-version
  3.12`` in a CDK *local bundling* step, so the wheels are the ones the Lambda runtime loads, and
  no Docker daemon is needed. The result is cached under ``<repo>/.cache/lambda-deps/<key>``
  (key: requirements + architecture + Python version), so only the first synth downloads wheels;
  later synths hard-link the cached tree into the asset directory.
- the **function code**: the ``vqa`` package and the ``lambdas`` handlers (a few hundred KB),
  copied as-is; its asset hash is the hash of those source files.

Why not one container image shared with the monolith: an image asset needs Docker at synth
*and* deploy time, and an image function pays a larger cold start; a zip + layer keeps synth
Docker-free and stays well under Lambda's 250 MB unzipped limit (checked by a test).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "lambdas" / "distributed" / "requirements.txt"
CACHE_DIR = ROOT / ".cache" / "lambda-deps"
PYTHON_VERSION = "3.12"
#: Lambda's unzipped limit for function code plus all layers.
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024

_PLATFORMS = {"x86_64": "manylinux_2_28_x86_64", "arm64": "manylinux_2_28_aarch64"}
# Never needed at run time: test suites and build scripts shipped inside wheels.
_PRUNE_DIRS = {"__pycache__", "tests", "testing"}


def _pip_platform(architecture: str) -> str:
    try:
        return _PLATFORMS[architecture]
    except KeyError:
        raise ValueError(f"no wheel platform for Lambda architecture {architecture!r}") from None


def deps_cache_key(requirements: str, architecture: str) -> str:
    """Cache key of the dependency tree: what pip is asked for and for which platform."""
    h = hashlib.sha256()
    for part in (requirements, _pip_platform(architecture), PYTHON_VERSION, "cp"):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def build_deps(architecture: str, *, requirements_file: Path = REQUIREMENTS) -> Path:
    """The cached ``python/`` tree for the layer, building it with pip on a cache miss."""
    requirements = requirements_file.read_text()
    key = deps_cache_key(requirements, architecture)
    final = CACHE_DIR / f"{architecture}-{key}"
    if (final / "python").is_dir():
        return final / "python"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{architecture}-", dir=CACHE_DIR))
    try:
        pip = [sys.executable, "-m", "pip"]
        if _pip_too_old():
            subprocess.run(
                [*pip, "install", "--quiet", "--upgrade", "pip"], check=True, stdout=sys.stderr
            )
        subprocess.run(
            [
                *pip,
                "install",
                "--quiet",
                "--no-compile",
                "--platform",
                _pip_platform(architecture),
                "--only-binary=:all:",
                "--python-version",
                PYTHON_VERSION,
                "--implementation",
                "cp",
                "-t",
                str(work / "python"),
                "-r",
                str(requirements_file),
            ],
            check=True,
            stdout=sys.stderr,
        )
        _prune(work / "python")
        try:
            work.rename(final)
        except OSError:
            if not (final / "python").is_dir():  # lost a race with another synth: theirs wins
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final / "python"


def _pip_too_old() -> bool:
    """pip understands ``manylinux_2_28`` tags (PEP 600) from 20.3; upgrade only below that, so
    a synth does not rewrite the interpreter's pip needlessly."""
    try:
        major, minor = (int(x) for x in version("pip").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return True
    return (major, minor) < (20, 3)


def _prune(tree: Path) -> None:
    for d in sorted(tree.rglob("*"), reverse=True):
        if d.is_dir() and d.name in _PRUNE_DIRS and d.parent.name != "python":
            shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(tree / "bin", ignore_errors=True)


def link_tree(src: Path, dst: Path) -> None:
    """Copy ``src`` into ``dst`` by hard links (same filesystem), falling back to copies."""

    def _link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=_link, dirs_exist_ok=True)


def code_files() -> Iterator[tuple[Path, Path]]:
    """``(source, relative destination)`` of every file the function code asset holds."""
    yield ROOT / "lambdas" / "__init__.py", Path("lambdas") / "__init__.py"
    for top in ("vqa", "lambdas/distributed"):
        for path in sorted((ROOT / top).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            if path.is_relative_to(ROOT / "vqa" / "local"):  # the emulator never runs on Lambda
                continue
            if path.suffix in (".py", ".json") or path.name == "py.typed":
                yield path, path.relative_to(ROOT)


def code_hash() -> str:
    h = hashlib.sha256()
    for src, rel in code_files():
        h.update(str(rel).encode())
        h.update(b"\0")
        h.update(src.read_bytes())
    return h.hexdigest()


def tree_size(path: Path) -> int:
    """Bytes of every regular file under ``path`` (hard links counted in full, as Lambda does)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@jsii.implements(cdk.ILocalBundling)
class _DepsBundler:
    def __init__(self, architecture: str) -> None:
        self.architecture = architecture

    def try_bundle(self, output_dir: str, options: Any = None, **_: Any) -> bool:
        link_tree(build_deps(self.architecture), Path(output_dir) / "python")
        return True


@jsii.implements(cdk.ILocalBundling)
class _CodeBundler:
    def try_bundle(self, output_dir: str, options: Any = None, **_: Any) -> bool:
        out = Path(output_dir)
        for src, rel in code_files():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out / rel)
        return True


# Docker is only the fallback CDK requires a value for; local bundling always succeeds here.
_FALLBACK_IMAGE = "public.ecr.aws/sam/build-python3.12"


class LambdaPackaging(Construct):
    """The dependencies layer and the function code asset, shared by every function."""

    def __init__(self, scope: Construct, construct_id: str, *, architecture: str) -> None:
        super().__init__(scope, construct_id)
        self.architecture = (
            lambda_.Architecture.ARM_64 if architecture == "arm64" else lambda_.Architecture.X86_64
        )
        requirements = REQUIREMENTS.read_text()
        self.deps_layer = lambda_.LayerVersion(
            self,
            "Deps",
            description="PyAV (with FFmpeg) and numpy for the VQA detectors",
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
            compatible_architectures=[self.architecture],
            code=lambda_.Code.from_asset(
                str(REQUIREMENTS.parent),
                asset_hash_type=cdk.AssetHashType.CUSTOM,
                asset_hash=deps_cache_key(requirements, architecture),
                bundling=cdk.BundlingOptions(
                    image=cdk.DockerImage.from_registry(_FALLBACK_IMAGE),
                    local=_DepsBundler(architecture),
                    command=[
                        "bash",
                        "-c",
                        "pip install -r requirements.txt -t /asset-output/python",
                    ],
                ),
            ),
        )
        self.code = lambda_.Code.from_asset(
            str(REQUIREMENTS.parent),
            asset_hash_type=cdk.AssetHashType.CUSTOM,
            asset_hash=code_hash(),
            bundling=cdk.BundlingOptions(
                image=cdk.DockerImage.from_registry(_FALLBACK_IMAGE),
                local=_CodeBundler(),
            ),
        )
