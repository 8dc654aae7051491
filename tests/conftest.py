"""Session fixtures shared by every test: the defect corpus and a set of bad inputs.

The corpus (the vqa/corpus package, ~30 clips) is written once and cached across sessions in
``<repo>/.cache/corpus-<hash>``, where the hash covers the corpus source and the PyAV/FFmpeg
version, so editing the recipes regenerates it. It is written into a temporary directory and
renamed into place under a file lock, so parallel sessions (and pytest-xdist workers) never see a
half-written corpus and generate it only once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import av
import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"


class Corpus(NamedTuple):
    """The generated corpus: ``dir`` holds the clips and ``truth.json``, ``truth`` its content."""

    dir: Path
    truth: dict[str, Any]

    def clip(self, name: str) -> dict[str, Any]:
        """The truth entry of clip ``name`` (its file name, e.g. ``"black.mp4"``)."""
        for entry in self.truth["clips"]:
            if entry["file"] == name:
                return dict(entry)
        raise KeyError(f"no clip {name!r} in the corpus")

    def path(self, name: str) -> Path:
        return self.dir / self.clip(name)["file"]

    def clips(self) -> Iterator[dict[str, Any]]:
        yield from self.truth["clips"]


def corpus_key() -> str:
    """Cache key: the corpus recipes' source plus the PyAV / FFmpeg build that encodes them."""
    digest = hashlib.sha256()
    for module in sorted((REPO / "vqa" / "corpus").glob("*.py")):
        digest.update(module.name.encode() + b"\0" + module.read_bytes())
    digest.update(f"av={av.__version__};ffmpeg={av.ffmpeg_version_info}".encode())
    digest.update(b"written-by-cli")  # the directory also holds the CLI's output
    return digest.hexdigest()[:16]


def _prune_stale(cache: Path, *, keep: str, max_age_s: float = 86_400.0) -> None:
    """Remove corpora of older recipe versions (untouched for a day, so no session uses them)."""
    now = time.time()
    for old in cache.glob("corpus-*"):
        if old.name.startswith(keep) or now - old.stat().st_mtime < max_age_s:
            continue
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


#: What ``vqa corpus`` printed when it wrote the cached corpus (tests/test_cli.py reads it).
CORPUS_CLI_OUTPUT = "cli-output.json"


def ensure_corpus(cache: Path = CACHE) -> Path:
    """Return the cached corpus directory, writing it first if needed (atomic, locked).

    It is written by the CLI (``vqa corpus DIR``, as a user would), whose output is kept in
    :data:`CORPUS_CLI_OUTPUT` for the CLI's own test: the corpus is written once per recipe
    version, not once more to test the command."""
    final = cache / f"corpus-{corpus_key()}"
    if (final / "truth.json").is_file():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "truth.json").is_file():  # another session finished it while we waited
            return final
        _prune_stale(cache, keep=final.name)
        tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=cache))
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "vqa", "corpus", str(tmp)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"vqa corpus failed ({proc.returncode}): {proc.stderr[-2000:]}")
            (tmp / CORPUS_CLI_OUTPUT).write_text(
                json.dumps({"returncode": proc.returncode, "stdout": proc.stdout})
            )
            tmp.chmod(0o755)  # mkdtemp makes it private
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    """The defect corpus with its truth (see docs/corpus.md)."""
    directory = ensure_corpus()
    truth = json.loads((directory / "truth.json").read_text())
    return Corpus(dir=directory, truth=truth)


@pytest.fixture(scope="session")
def ts_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The TR 101 290 clips (:func:`vqa.corpus.write_transport_corpus`: ~3 MB, a few seconds)
    and their truth, written once per session for the transport and parity tests."""
    from vqa.corpus import write_transport_corpus

    out = tmp_path_factory.mktemp("transport")
    return out, write_transport_corpus(out)


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """Sources that cannot be analysed at all; each must give exit 2 and one clear line.

    ``empty``: a 0-byte .mp4; ``text``: a text file named .mp4; ``no_moov``: an MP4 cut before
    its index; ``undecodable``: a valid MP4 whose video is EVC (``evc1``), which PyAV opens but
    FFmpeg cannot decode; ``unreachable``: an HTTP URL nobody listens on (a str, not a Path).
    """
    from vqa.corpus import write_no_moov, write_undecodable

    d = tmp_path_factory.mktemp("bad_inputs")
    empty = d / "empty.mp4"
    empty.write_bytes(b"")
    text = d / "text.mp4"
    text.write_text("This is not a video. It is a shopping list: eggs, milk, bread.\n")
    no_moov = d / "no_moov.mp4"
    write_no_moov(no_moov)
    undecodable = d / "undecodable.mp4"
    write_undecodable(undecodable)
    return {
        "empty": empty,
        "text": text,
        "no_moov": no_moov,
        "undecodable": undecodable,
        "unreachable": "http://127.0.0.1:9/none.ts",
    }
