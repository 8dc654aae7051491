"""Packaging of ``vqa`` + its locked dependencies for the Lambda runtime, without Docker at synth.

Two assets:

- a **dependencies layer** shared by every function: everything ``requirements.lock`` pins (PyAV
  with its bundled FFmpeg, numpy, boto3 and their dependencies), installed by ``pip install
  --require-hashes --platform manylinux_2_28_<arch> --only-binary=:all: --python-version 3.12``,
  so the wheels are the ones the Lambda runtime loads and the very files the container image
  installs from the same lock. The layer carries the lock's boto3 although the runtime ships one:
  the runtime's copy changes whenever AWS updates it, under a function nobody redeployed, and
  parity with the worker image (same botocore retries, endpoints and API models in both
  architectures) is the point of the A/B. Layers come before the runtime's packages on
  ``sys.path``, so the layer's copy is the one imported.

  The tree is built once per lock and architecture into ``<repo>/.cache/lambda-deps/<arch>-<key>``
  (key: the lock's text + platform + Python version); a synth that finds it runs no pip at all and
  needs no network. A miss that cannot reach the package index fails with one message saying
  what to run (:class:`LayerBuildError`); ``python -m stacks.constructs.packaging`` fills the
  cache ahead of an offline synth.
- the **function code**: the ``vqa`` package and the ``lambdas`` handlers (a few hundred KB),
  copied as-is; its asset hash is the hash of those source files.

Why not one container image shared with the monolith: an image asset needs Docker at synth
*and* deploy time, and an image function pays a larger cold start; a zip + layer keeps synth
Docker-free and stays well under Lambda's 250 MB unzipped limit (checked by a test).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

ROOT = Path(__file__).resolve().parents[2]
#: The one lock of the runtime dependencies: the layer, the worker image and the venv install it.
LOCK = ROOT / "requirements.lock"
#: Directory the layer asset is declared on; its content is the bundled tree (custom hash).
ASSET_DIR = ROOT / "lambdas" / "distributed"
CACHE_DIR = ROOT / ".cache" / "lambda-deps"
#: Lambda's unzipped limit for function code plus all layers.
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024

_PLATFORMS = {"x86_64": "manylinux_2_28_x86_64", "arm64": "manylinux_2_28_aarch64"}
# Never needed at run time: test suites and build scripts shipped inside wheels.
_PRUNE_DIRS = {"__pycache__", "tests", "testing"}


class LayerBuildError(RuntimeError):
    """The dependencies layer is not cached and pip could not build it."""


def python_version(runtime: lambda_.Runtime) -> str:
    """``"3.12"`` for ``python3.12``: the interpreter the layer's wheels are chosen for."""
    name = runtime.name
    if not name.startswith("python"):
        raise ValueError(f"not a Python runtime: {name}")
    return name.removeprefix("python")


def locked_versions(lock: Path = LOCK) -> dict[str, str]:
    """``{distribution: version}`` of every pin in the lock (names as written there)."""
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#") and "==" in line:
            name, _, rest = line.partition("==")
            pins[name.strip()] = rest.split()[0].rstrip("\\").strip()
    return pins


def _pip_platform(architecture: str) -> str:
    try:
        return _PLATFORMS[architecture]
    except KeyError:
        raise ValueError(f"no wheel platform for Lambda architecture {architecture!r}") from None


def deps_cache_key(lock_text: str, architecture: str, python: str) -> str:
    """Cache key of the dependency tree: which pins, for which platform and interpreter."""
    h = hashlib.sha256()
    for part in (lock_text, _pip_platform(architecture), python, "cp"):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def deps_dir(architecture: str, python: str, *, lock: Path = LOCK) -> Path:
    """Where the layer's ``python/`` tree for this lock, architecture and Python is cached."""
    key = deps_cache_key(lock.read_text(), architecture, python)
    return CACHE_DIR / f"{architecture}-{key}" / "python"


def build_deps(architecture: str, python: str, *, lock: Path = LOCK) -> Path:
    """The cached ``python/`` tree for the layer, building it with pip on a cache miss.

    A hit runs nothing. A miss runs pip against the package index with ``--require-hashes``
    (every file must match a hash in the lock); when that fails (no network, a wheel missing for
    the platform) it raises :class:`LayerBuildError` naming the command that fills the cache.
    """
    final = deps_dir(architecture, python, lock=lock)
    if final.is_dir():
        return final
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{architecture}-", dir=CACHE_DIR))
    try:
        pip = [sys.executable, "-m", "pip"]
        if _pip_too_old():
            _run_pip([*pip, "install", "--quiet", "--upgrade", "pip"], architecture, python)
        _run_pip(
            [
                *pip,
                "install",
                "--quiet",
                "--no-compile",
                "--disable-pip-version-check",
                # Offline, fail after a few seconds rather than pip's default 5 retries.
                "--retries",
                "2",
                "--timeout",
                "15",
                "--require-hashes",
                "--no-deps",  # the lock is complete: every transitive pin is listed
                "--platform",
                _pip_platform(architecture),
                "--only-binary=:all:",
                "--python-version",
                python,
                "--implementation",
                "cp",
                "-t",
                str(work / "python"),
                "-r",
                str(lock),
            ],
            architecture,
            python,
        )
        _prune(work / "python")
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            (work / "python").rename(final)
        except OSError:
            if not final.is_dir():  # lost a race with another synth: theirs wins
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (as a user would type it)."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _run_pip(cmd: list[str], architecture: str, python: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return
    sys.stderr.write(proc.stderr)
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    reason = next(
        (ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else ""
    )
    raise LayerBuildError(
        f"cannot build the Lambda dependencies layer ({architecture}, Python {python}) from "
        f"{LOCK.name}: pip failed ({reason or f'exit status {proc.returncode}'}). With access to "
        f"PyPI run `.venv/bin/python -m stacks.constructs.packaging --architecture "
        f"{architecture}` once; synths then use the cache in {_shown(CACHE_DIR)}/ and "
        "need no network."
    )


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
    for top in ("vqa", "lambdas/distributed", "lambdas/api", "lambdas/orchestrator"):
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
    """Links the tree :class:`LambdaPackaging` built (in Python, before synth) into the asset."""

    def __init__(self, tree: Path) -> None:
        self.tree = tree

    def try_bundle(self, output_dir: str, options: Any = None, **_: Any) -> bool:
        link_tree(self.tree, Path(output_dir) / "python")
        return True


@jsii.implements(cdk.ILocalBundling)
class _CodeBundler:
    def try_bundle(self, output_dir: str, options: Any = None, **_: Any) -> bool:
        out = Path(output_dir)
        for src, rel in code_files():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out / rel)
        return True


class LambdaPackaging(Construct):
    """The dependencies layer and the function code asset, shared by every function."""

    def __init__(
        self, scope: Construct, construct_id: str, *, architecture: str, runtime: lambda_.Runtime
    ) -> None:
        super().__init__(scope, construct_id)
        self.architecture = (
            lambda_.Architecture.ARM_64 if architecture == "arm64" else lambda_.Architecture.X86_64
        )
        python = python_version(runtime)
        tree = deps_dir(architecture, python)
        if cdk.Stack.of(self).bundling_required:
            # Built here, in plain Python, rather than inside the bundling callback: an error
            # then reaches `cdk synth` as the one line below instead of a jsii stack trace.
            try:
                tree = build_deps(architecture, python)
            except LayerBuildError as exc:
                raise SystemExit(f"error: {exc}") from None
        self.deps_layer = lambda_.LayerVersion(
            self,
            "Deps",
            description="The locked runtime dependencies (PyAV with FFmpeg, numpy, boto3) of VQA",
            compatible_runtimes=[runtime],
            compatible_architectures=[self.architecture],
            code=lambda_.Code.from_asset(
                str(ASSET_DIR),
                asset_hash_type=cdk.AssetHashType.CUSTOM,
                asset_hash=tree.parent.name,
                bundling=cdk.BundlingOptions(
                    # Docker is only the fallback CDK requires; local bundling always succeeds.
                    image=runtime.bundling_image,
                    local=_DepsBundler(tree),
                ),
            ),
        )
        self.code = lambda_.Code.from_asset(
            str(ASSET_DIR),
            asset_hash_type=cdk.AssetHashType.CUSTOM,
            asset_hash=code_hash(),
            bundling=cdk.BundlingOptions(
                image=runtime.bundling_image,
                local=_CodeBundler(),
            ),
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Fill the layer cache (the one step of an offline synth that needs PyPI)."""
    from stacks.constructs.lambda_defaults import RUNTIME

    p = argparse.ArgumentParser(
        prog="python -m stacks.constructs.packaging",
        description=f"Build the Lambda dependencies layer from {LOCK.name} into "
        f"{_shown(CACHE_DIR)}/, so that `cdk synth` needs no network.",
    )
    p.add_argument("--architecture", choices=sorted(_PLATFORMS), action="append")
    args = p.parse_args(argv)
    for arch in args.architecture or sorted(_PLATFORMS):
        try:
            tree = build_deps(arch, python_version(RUNTIME))
        except LayerBuildError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"{arch}: {tree} ({tree_size(tree) / 2**20:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
