"""The SSRF guard (vqa.urlguard): addresses, schemes, DNS answers, redirect hops, playlist entries.

An origin on 127.0.0.1 serves playlists whose entries (or redirects) point at each forbidden
target; the guard is switched on per test through the environment the stacks set
(``VQA_URL_GUARD``, ``VQA_ALLOWED_ORIGINS``), with only the origin itself (127.0.0.1/32) allowed.
Refused targets are never connected to, so none of these tests waits on a timeout.
"""

from __future__ import annotations

import io
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import av
import numpy as np
import pytest

from vqa import hls_cursor, live, media, urlguard
from vqa.errors import BadSourceError


def _ts_segment(start: float = 0.0, seconds: float = 1.0, fps: int = 10) -> bytes:
    """A small MPEG-TS segment (64x48 grey video), made here so the test needs no corpus."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as out:
        st = out.add_stream("mpeg2video", rate=fps)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        st.time_base = Fraction(1, fps)
        for i in range(int(seconds * fps)):
            img = np.full((48, 64, 3), 128, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = round(start * fps) + i
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return buf.getvalue()


SEGMENT = _ts_segment()
SEGMENT2 = _ts_segment(start=1.0)  # the next second


def _playlist(*uris: str) -> bytes:
    body = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:0"]
    for u in uris:
        body += ["#EXTINF:1.0,", u]
    return ("\n".join([*body, "#EXT-X-ENDLIST"]) + "\n").encode()


class Origin:
    """``/seg.ts``, ``/seg2.ts`` (two real segments in a row), ``/list.m3u8?u=URI&u=...`` (a
    VOD playlist of those entries), ``/go?to=URL`` (302 to URL), ``/host`` (echoes Host)."""

    def __init__(self) -> None:
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                q = parse_qs(url.query)
                origin.paths.append(url.path)
                if url.path == "/go":
                    self.send_response(302)
                    self.send_header("Location", q["to"][0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if url.path.endswith(".m3u8"):
                    body = _playlist(*q.get("u", [origin.url("/seg.ts")]))
                elif url.path == "/seg.ts":
                    body = SEGMENT
                elif url.path == "/seg2.ts":
                    body = SEGMENT2
                elif url.path == "/host":
                    body = str(self.headers.get("Host")).encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, *, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def playlist(self, *uris: str) -> str:
        return self.url("/list.m3u8?" + "&".join(f"u={quote(u, safe='')}" for u in uris))

    def go(self, to: str) -> str:
        return self.url(f"/go?to={quote(to, safe='')}")


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    o = Origin()
    yield o
    o.server.shutdown()
    o.server.server_close()


@pytest.fixture
def guard_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard as the stacks run it, allowing only the test origin's own address."""
    monkeypatch.setenv(urlguard.ENV_ENABLED, "1")
    monkeypatch.setenv(urlguard.ENV_ALLOWED, "127.0.0.1/32")


def _follow(url: str) -> list[Any]:
    return list(live.follow(url, loss_after=2.0))


def _analyze(url: str) -> list[Any]:
    return list(media.iter_segments(url))


def _cursor(url: str) -> list[Any]:
    """The distributed converter's reader (vqa.hls_cursor), step by step to the end tag."""
    cur = hls_cursor.open_cursor(url, now=time.time())
    steps = []
    while not steps or steps[-1].kind != hls_cursor.ENDED:
        steps.append(hls_cursor.advance(cur, url, now=time.time(), segment_seconds=1.0))
        cur = steps[-1].cursor
    return steps


#: Every reader of a remote source: vqa watch's live path, vqa analyze's, the converter's.
READERS = (_follow, _analyze, _cursor)


# Each forbidden target and the phrase its refusal must carry.
FORBIDDEN = {
    "instance metadata": ("http://169.254.169.254/latest/meta-data/", "EC2 instance metadata"),
    "task metadata": ("http://169.254.170.2/v2/credentials/x", "ECS task metadata"),
    "ipv6 metadata": ("http://[fd00:ec2::254]/latest/", "EC2 instance metadata (IPv6)"),
    "loopback": ("http://127.0.0.2:8080/seg.ts", "loopback"),
    "loopback v6": ("http://[::1]/seg.ts", "loopback"),
    "loopback as a number": ("http://2130706434/seg.ts", "loopback"),
    "private": ("http://10.0.0.5/seg.ts", "private"),
    "private 192.168": ("http://192.168.1.1/seg.ts", "private"),
    "cgnat": ("http://100.64.0.1/seg.ts", "CGNAT"),
    "ula": ("http://[fd12:3456::1]/seg.ts", "ULA"),
    "mapped v4": ("http://[::ffff:169.254.169.254]/", "EC2 instance metadata"),
    "unspecified": ("http://0.0.0.0/seg.ts", "unspecified"),
    "multicast": ("http://224.0.0.1/seg.ts", "multicast"),
    "file": ("file:///etc/passwd", "scheme 'file'"),
    "data": ("data:video/mp2t;base64,R0dH", "scheme 'data'"),
    "ftp": ("ftp://example.com/seg.ts", "scheme 'ftp'"),
}


@pytest.mark.parametrize("name", list(FORBIDDEN))
def test_playlist_entry_pointing_at_a_forbidden_target_is_refused(
    origin: Origin, guard_on: None, name: str
) -> None:
    target, why = FORBIDDEN[name]
    url = origin.playlist(target)
    for read in READERS:
        with pytest.raises(BadSourceError) as err:
            read(url)
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith(origin.url("/list.m3u8") + ": refused"), msg
        assert why in msg, msg


@pytest.mark.parametrize("name", ["instance metadata", "loopback", "private", "file", "ftp"])
def test_a_redirect_to_a_forbidden_target_is_refused(
    origin: Origin, guard_on: None, name: str
) -> None:
    target, why = FORBIDDEN[name]
    before = len(origin.paths)
    # The playlist itself redirected, and a segment entry that redirects.
    for url in (origin.go(target), origin.playlist(origin.go(target))):
        for read in READERS:
            with pytest.raises(BadSourceError) as err:
                read(url)
            assert "\n" not in str(err.value) and why in str(err.value), str(err.value)
            assert str(err.value).startswith(urlguard.redact(url)), str(err.value)
    assert "/seg.ts" not in origin.paths[before:]


def test_a_remote_playlist_never_reads_local_files_even_with_the_guard_off(
    origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(urlguard.ENV_ENABLED, raising=False)
    with pytest.raises(BadSourceError, match="scheme 'file'"):
        _follow(origin.playlist("file:///etc/passwd"))
    with pytest.raises(BadSourceError, match="scheme 'file'"):
        _follow(origin.playlist("file:relative.ts"))


def test_the_allowed_origin_is_fetched_and_decoded(origin: Origin, guard_on: None) -> None:
    url = origin.playlist(origin.url("/seg.ts"), origin.url("/seg2.ts"))
    for read in (_follow, _analyze):
        segs = [s for s in read(url) if hasattr(s, "video")]
        assert segs, read
        assert max(s.end for s in segs) == pytest.approx(2.0, abs=0.15)


def test_the_guard_is_off_by_default_for_local_runs(
    origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(urlguard.ENV_ENABLED, raising=False)
    assert urlguard.guard_from_env() is None
    assert _analyze(origin.url("/seg.ts"))  # loopback, unguarded: the local CLI's normal case
    monkeypatch.setenv(urlguard.ENV_ENABLED, "1")
    monkeypatch.delenv(urlguard.ENV_ALLOWED, raising=False)
    with pytest.raises(BadSourceError, match=r"127\.0\.0\.1 is loopback"):
        _analyze(origin.url("/seg.ts"))


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]) -> list[str]:
    """Resolve the names in ``answers`` to successive answer lists (the last one repeats);
    returns the names looked up, in order."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return real(host, port, *args, **kwargs)
        asked.append(host)
        queue = answers[host]
        addrs = queue.pop(0) if len(queue) > 1 else queue[0]
        out: list[Any] = []
        for a in addrs:
            if ipaddress.ip_address(a).version == 6:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, int(port), 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, int(port))))
        return out

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return asked


def test_every_dns_answer_is_checked(
    origin: Origin, guard_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_dns(
        monkeypatch,
        {
            "cdn.example.com": [["10.1.2.3"]],
            "mixed.example.com": [["93.184.216.34", "169.254.169.254"]],
        },
    )
    with pytest.raises(BadSourceError, match=r"cdn\.example\.com: it resolves to 10\.1\.2\.3"):
        _follow(f"http://cdn.example.com:{origin.port}/x.m3u8")
    # One bad answer among good ones refuses the name: the client could pick any of them.
    with pytest.raises(BadSourceError, match=r"169\.254\.169\.254, which is link-local"):
        _analyze(origin.playlist(f"http://mixed.example.com:{origin.port}/seg.ts"))


def test_the_connection_goes_to_the_vetted_address_not_a_second_lookup(
    origin: Origin, guard_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rebinding name: allowed on the first answer, metadata on any later one. One lookup per
    # connection, used for both the check and the connect, means the second answer never counts.
    asked = _fake_dns(monkeypatch, {"rebind.example.com": [["127.0.0.1"], ["169.254.169.254"]]})
    with urlguard.urlopen(f"http://rebind.example.com:{origin.port}/host", timeout=5) as resp:
        assert resp.read().decode() == f"rebind.example.com:{origin.port}"  # the name, kept
    assert asked == ["rebind.example.com"]
    with pytest.raises(BadSourceError, match=r"169\.254\.169\.254"):
        urlguard.urlopen(f"http://rebind.example.com:{origin.port}/host", timeout=5)


def test_an_allowed_host_name_reaches_a_private_origin_but_not_metadata(
    origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(urlguard.ENV_ENABLED, "1")
    monkeypatch.setenv(urlguard.ENV_ALLOWED, ".internal")
    _fake_dns(
        monkeypatch,
        {"encoder.internal": [["127.0.0.1"]], "imds.internal": [["169.254.169.254"]]},
    )
    segs = _analyze(f"http://encoder.internal:{origin.port}/seg.ts")
    assert segs and segs[-1].end == pytest.approx(1.0, abs=0.15)
    with pytest.raises(BadSourceError, match="link-local"):
        _analyze(f"http://imds.internal:{origin.port}/seg.ts")
    # The plain loopback address is not on the list.
    with pytest.raises(BadSourceError, match="loopback"):
        _analyze(origin.url("/seg.ts"))


def test_cli_refusal_is_one_line_and_exit_2(
    origin: Origin, guard_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from vqa.cli import main

    src = origin.playlist("http://169.254.169.254/latest/meta-data/iam/")
    for argv in (["analyze", src], ["watch", src, "--json"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert err.startswith(f"vqa: error: {origin.url('/list.m3u8')}: refused"), err
        assert "169.254.169.254 is link-local (EC2 instance metadata)" in err


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("169.254.169.254", "EC2 instance metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("100.127.255.255", "CGNAT"),
        ("fc00::1", "ULA"),
        ("::", "unspecified"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "private"),  # TEST-NET-1: documentation only
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_classify(address: str, why: str | None) -> None:
    got = urlguard.classify(ipaddress.ip_address(address))
    assert got == why if why is None else (got is not None and why in got), got


def test_allow_list_parsing_and_schemes() -> None:
    g = urlguard.UrlGuard.from_origins(["10.0.0.0/8", " Encoder.Internal ", ".corp.example"])
    assert g.address_refusal(ipaddress.ip_address("10.9.9.9")) is None
    assert g.address_refusal(ipaddress.ip_address("11.0.0.1")) is None  # public anyway
    assert g.address_refusal(ipaddress.ip_address("192.168.0.1")) == "private"
    assert g.host_allowed("encoder.internal") and g.host_allowed("a.b.corp.example")
    assert not g.host_allowed("evilcorp.example")
    with pytest.raises(ValueError, match="not a host name"):
        urlguard.UrlGuard.from_origins(["http://x/"])
    with pytest.raises(BadSourceError, match="scheme 's3'"):
        g.check_url("s3://bucket/key")
    s3 = urlguard.UrlGuard.from_origins([], allow_s3=True)
    assert s3.check_url("s3://bucket/key") == "s3://bucket/key"
    assert urlguard.parse_origins('["a", "10.0.0.0/8"]') == ["a", "10.0.0.0/8"]
    assert urlguard.parse_origins(" a, ,10.0.0.0/8 ") == ["a", "10.0.0.0/8"]
    # What the stacks set is what guard_from_env reads.
    env = urlguard.environment(["10.0.0.0/8", "encoder.internal"])
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        on = urlguard.guard_from_env()
    assert on is not None and on.host_allowed("encoder.internal")
    assert on.address_refusal(ipaddress.ip_address("10.1.1.1")) is None


def test_redact_keeps_no_secrets() -> None:
    url = "https://user:pw@cdn.example.com:8443/live/index.m3u8?token=abc&sig=1#frag"
    assert urlguard.redact(url) == "https://cdn.example.com:8443/live/index.m3u8"
    with pytest.raises(BadSourceError) as err:
        urlguard.UrlGuard().check_url("ftp://u:secret@host/x?key=k")
    assert "secret" not in str(err.value) and "key=" not in str(err.value)


def test_cdk_json_allowed_origins_are_validated() -> None:
    from stacks.config import VqaConfig

    cfg = VqaConfig.from_context({"allowed_origins": ["10.20.0.0/16", "encoder.internal"]})
    assert cfg.allowed_origins == ("10.20.0.0/16", "encoder.internal")
    assert VqaConfig().allowed_origins == ()
    with pytest.raises(ValueError, match="allowed_origins"):
        VqaConfig.from_context({"allowed_origins": ["ftp://nope"]})


@pytest.mark.parametrize(
    ("arch", "target"),
    [
        ("distributed", "instance metadata"),  # the Start/Convert functions
        ("monolith", "private"),  # the shard tasks' workers
    ],
)
def test_the_emulated_services_refuse_a_private_target(
    origin: Origin, monkeypatch: pytest.MonkeyPatch, arch: str, target: str
) -> None:
    """The guard as the templates switch it on, in the emulation: the origin on loopback is
    read (the local platform allows loopback), the private entry it lists is refused, and the
    refusal is the stream's recorded failure."""
    from vqa.local import provision

    # The guard must come from the template's environment, not this process's.
    monkeypatch.delenv(urlguard.ENV_ENABLED, raising=False)
    monkeypatch.delenv(urlguard.ENV_ALLOWED, raising=False)
    address, why = FORBIDDEN[target]
    url = origin.playlist(address)
    before = len(origin.paths)
    if arch == "distributed":
        from vqa.local.distributed import run_local
    else:
        from vqa.local.monolith import run_local  # type: ignore[assignment]
    with pytest.raises(BadSourceError) as err:
        run_local(url)
    msg = str(err.value)
    assert "\n" not in msg and why in msg and "refused" in msg, msg
    assert urlguard.redact(url) in msg, msg
    assert "/list.m3u8" in origin.paths[before:]  # loopback reached: the platform's allowance
    assert provision.LOCAL_ALLOWED_ORIGINS == ("127.0.0.0/8",)
    if arch == "distributed":
        recorded = err.value.recorded  # type: ignore[attr-defined]
        assert recorded["state"] == "failed" and recorded["error"] == "BadSourceError"


def test_the_local_platform_appends_loopback_to_the_template_allow_list() -> None:
    from vqa.local.provision import platform_environment

    env = {urlguard.ENV_ENABLED: "1", urlguard.ENV_ALLOWED: "10.20.0.0/16,.encoders.internal"}
    out = platform_environment(env)
    assert out[urlguard.ENV_ENABLED] == "1"  # never switched off
    assert out[urlguard.ENV_ALLOWED] == "10.20.0.0/16,.encoders.internal,127.0.0.0/8"
    assert (
        platform_environment({urlguard.ENV_ENABLED: "1", urlguard.ENV_ALLOWED: ""})[
            urlguard.ENV_ALLOWED
        ]
        == "127.0.0.0/8"
    )
    # Functions that fetch nothing (no allow-list in the template) are left as they are.
    assert platform_environment({"TABLE_NAME": "t"}) == {"TABLE_NAME": "t"}
