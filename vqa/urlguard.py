"""Server-side request forgery guard for the URLs users hand the deployed services.

The stacks fetch user-supplied URLs from inside a VPC, where a URL can reach what the internet
cannot: the instance and task metadata endpoints (credentials), the VPC's own services, loopback.
:class:`UrlGuard` refuses, by default, every address that is not globally routable:

- link-local ``169.254.0.0/16`` and ``fe80::/10`` (EC2 instance metadata ``169.254.169.254``, ECS
  task metadata ``169.254.170.2``) and the IPv6 metadata address ``fd00:ec2::254``;
- loopback, private (RFC 1918, CGNAT ``100.64.0.0/10``, ULA ``fc00::/7``), unspecified,
  multicast, reserved and documentation ranges (anything :attr:`ipaddress.IPv4Address.is_global`
  calls not global), including IPv4 written as IPv6 (``::ffff:127.0.0.1``) or as a number
  (``2130706433``, ``0x7f.1``).

It checks every DNS answer (all of them: one private answer refuses the name), then connects to
the address it vetted, not to the name again, so a DNS answer that changes between check and
connect (rebinding) cannot slip through; every redirect hop goes through the same check, and
:func:`check_entry` checks every URI of a remote playlist (variants and segments, resolved
against the playlist's URL) before anything fetches it. Only ``http``/``https`` (and ``s3`` where
the stack allows it) pass; ``file:``, ``data:``, ``ftp:`` and the rest never do.

An allow-list opens private origins: CIDRs (``10.1.0.0/16``) admit those addresses; host names
(``encoder.internal``, or ``.internal`` for a domain and its subdomains) admit whatever their
DNS answers are, except link-local (metadata) addresses, which only an explicit CIDR admits.

Where it is on: ``VQA_URL_GUARD=1``, which both stacks set on every function and task that
fetches a source, with the allow-list in ``VQA_ALLOWED_ORIGINS`` (comma-separated, from
``cdk.json``'s ``allowed_origins``). The local CLI (``vqa analyze/watch/run`` on your machine)
leaves it off unless that variable is set: there the user fetching is the user who typed the URL,
and local origins on 127.0.0.1 are the normal case. Proxies from the environment are not used
while the guard is on: a proxy would resolve and connect on our behalf, past the check.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import os
import socket
import urllib.request
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from vqa.errors import BadSourceError

ENV_ENABLED = "VQA_URL_GUARD"
ENV_ALLOWED = "VQA_ALLOWED_ORIGINS"

#: The environment of the Lambda function being invoked in this process (the local emulation
#: runs handlers in-process, each with its own environment), else None: os.environ applies.
FUNCTION_ENVIRONMENT: ContextVar[Mapping[str, str] | None] = ContextVar(
    "vqa_function_environment", default=None
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Where the metadata services answer: named in the refusal, since they are what SSRF is after.
METADATA = {
    ipaddress.ip_address("169.254.169.254"): "EC2 instance metadata",
    ipaddress.ip_address("169.254.170.2"): "ECS task metadata",
    ipaddress.ip_address("fd00:ec2::254"): "EC2 instance metadata (IPv6)",
}
CGNAT = ipaddress.ip_network("100.64.0.0/10")
ULA = ipaddress.ip_network("fc00::/7")


def redact(url: str) -> str:
    """``url`` fit for a log line or an error: no userinfo, no query string, no fragment
    (signed URLs and tokens live there)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def classify(addr: Address) -> str | None:
    """Why ``addr`` is refused by default (a short phrase), or None when it is public."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr in METADATA:
        return f"link-local ({METADATA[addr]})"
    if addr.is_link_local:
        return "link-local"
    if addr.is_loopback:
        return "loopback"
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_multicast:
        return "multicast"
    if isinstance(addr, ipaddress.IPv4Address) and addr in CGNAT:
        return "private (CGNAT 100.64.0.0/10)"
    if isinstance(addr, ipaddress.IPv6Address) and addr in ULA:
        return "private (ULA fc00::/7)"
    if addr.is_reserved:
        return "reserved"
    if addr.is_private:
        return "private"
    if not addr.is_global:
        return "reserved"
    return None


def _literal(host: str) -> Address | None:
    """The address ``host`` spells, in any form the C resolver accepts (``0x7f.1``, octal)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:  # inet_aton is what getaddrinfo uses for numeric IPv4 forms
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class UrlGuard:
    """The refusal rules and the allow-list; see the module docstring."""

    allowed_networks: tuple[Network, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # lower case; a leading dot means "and subdomains"
    schemes: frozenset[str] = field(default_factory=lambda: frozenset({"http", "https"}))

    @classmethod
    def from_origins(cls, origins: Iterable[str], *, allow_s3: bool = False) -> UrlGuard:
        """A guard allowing ``origins`` (host names, ``.domain`` suffixes, CIDRs or addresses).

        Raises ValueError naming an entry that is neither.
        """
        nets: list[Network] = []
        hosts: list[str] = []
        for raw in origins:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                nets.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            name = entry.lstrip(".")
            if not name or "/" in entry or ":" in entry or any(c.isspace() for c in entry):
                raise ValueError(f"allowed origin {raw!r}: not a host name, domain or CIDR")
            hosts.append(entry)
        schemes = {"http", "https"} | ({"s3"} if allow_s3 else set())
        return cls(tuple(nets), tuple(hosts), frozenset(schemes))

    # ------------------------------------------------------------------ checks

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(
            host == h or (h.startswith(".") and (host.endswith(h) or host == h[1:]))
            for h in self.allowed_hosts
        )

    def address_refusal(self, addr: Address, *, host: str = "") -> str | None:
        """Why connecting to ``addr`` (an answer for ``host``) is refused, or None."""
        why = classify(addr)
        if why is None:
            return None
        if any(addr in net for net in self.allowed_networks):
            return None
        if host and self.host_allowed(host) and not why.startswith("link-local"):
            return None
        return why

    def check_url(self, url: str, *, source: str | None = None) -> str:
        """Syntax, scheme and literal-address rules (no DNS); ``url`` back, or BadSourceError
        naming ``source`` (default ``url``) and the refused URL, redacted."""
        src = redact(source or url)
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise BadSourceError(src, f"refused {redact(url)}: malformed URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in self.schemes:
            allowed = "/".join(sorted(self.schemes))
            raise BadSourceError(
                src, f"refused {redact(url)}: scheme {scheme or '(none)'!r} (only {allowed})"
            )
        host = parts.hostname or ""
        if not host:
            raise BadSourceError(src, f"refused {redact(url)}: no host")
        if scheme == "s3":
            return url
        addr = _literal(host)
        if addr is not None:
            why = self.address_refusal(addr)
            if why:
                raise BadSourceError(src, f"refused {redact(url)}: {addr} is {why}")
        return url

    def resolve(self, host: str, port: int, *, source: str) -> list[tuple[Any, ...]]:
        """Every address ``host`` resolves to (``getaddrinfo`` tuples), all vetted; refuses the
        name when any answer is refused, since the client may pick any of them."""
        # A lookup that fails is a connection problem (OSError: urllib's URLError, which a live
        # follower retries), not a refusal.
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"cannot resolve {host} (no addresses)")
        for info in infos:
            addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            why = self.address_refusal(addr, host=host)
            if why:
                raise BadSourceError(
                    redact(source), f"refused {host}: it resolves to {addr}, which is {why}"
                )
        return infos

    def connect(self, host: str, port: int, timeout: float | None, *, source: str) -> socket.socket:
        """A TCP connection to a vetted address of ``host`` (tried in DNS order)."""
        last: OSError | None = None
        for family, socktype, proto, _, sockaddr in self.resolve(host, port, source=source):
            sock = socket.socket(family, socktype, proto)
            try:
                if timeout is not None:
                    sock.settimeout(timeout)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                last = exc
        assert last is not None
        raise last

    # ------------------------------------------------------------------ fetching

    def opener(self, source: str) -> urllib.request.OpenerDirector:
        """A urllib opener that checks every URL and redirect hop and connects only to vetted
        addresses; refusals raise BadSourceError naming ``source``."""
        return urllib.request.build_opener(
            urllib.request.ProxyHandler({}),  # no proxy: it would connect past the check
            _GuardedHTTPHandler(self, source),
            _GuardedHTTPSHandler(self, source),
            _GuardedRedirectHandler(self, source),
        )


# --------------------------------------------------------------------------- urllib plumbing


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, guard: UrlGuard, source: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard, self._source = guard, source

    def connect(self) -> None:
        self.sock = self._guard.connect(self.host, self.port, self.timeout, source=self._source)


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, guard: UrlGuard, source: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard, self._source = guard, source

    def connect(self) -> None:
        sock = self._guard.connect(self.host, self.port, self.timeout, source=self._source)
        # TLS still verifies the certificate against the name, not the address we connected to.
        self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
            sock, server_hostname=self.host
        )


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, guard: UrlGuard, source: str) -> None:
        super().__init__()
        self._guard, self._source = guard, source

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        self._guard.check_url(req.full_url, source=self._source)
        conn = partial(_GuardedHTTPConnection, guard=self._guard, source=self._source)
        return self.do_open(conn, req)  # type: ignore[arg-type]


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, guard: UrlGuard, source: str) -> None:
        super().__init__()
        self._guard, self._source = guard, source

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        self._guard.check_url(req.full_url, source=self._source)
        conn = partial(_GuardedHTTPSConnection, guard=self._guard, source=self._source)
        return self.do_open(conn, req, context=self._context)  # type: ignore[arg-type,attr-defined]


class _GuardedRedirectHandler(urllib.request.HTTPRedirectHandler):
    def __init__(self, guard: UrlGuard, source: str) -> None:
        super().__init__()
        self._guard, self._source = guard, source

    def http_error_302(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any
    ) -> Any:
        # Checked before urllib's own scheme check, for a clear error naming the hop (urllib
        # refuses a file: or ftp: hop too, but vaguely); the hop's address is checked when it
        # connects, like any other request's.
        location = headers.get("location") or headers.get("uri")
        if location:
            self._guard.check_url(urljoin(req.full_url, location), source=self._source)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


# --------------------------------------------------------------------------- configuration


def _environ() -> Mapping[str, str]:
    # A handler run in-process by the local emulation has its function's environment here, not
    # in os.environ; the guard must follow the function's setting, as it does when deployed.
    local = FUNCTION_ENVIRONMENT.get()
    return os.environ if local is None else local


def enabled() -> bool:
    """Whether this process (or the function it runs) guards the URLs it fetches
    (``VQA_URL_GUARD``)."""
    return _environ().get(ENV_ENABLED, "").strip().lower() in ("1", "true", "yes", "on")


def environment(allowed_origins: Iterable[str]) -> dict[str, str]:
    """The environment a deployed function or task that fetches sources runs with: the guard on,
    ``cdk.json``'s allow-list (the stacks' one way of setting both)."""
    return {ENV_ENABLED: "1", ENV_ALLOWED: ",".join(allowed_origins)}


def parse_origins(value: str) -> list[str]:
    """``VQA_ALLOWED_ORIGINS``: comma-separated (a JSON list also accepted)."""
    value = value.strip()
    if value.startswith("["):
        import json

        return [str(v) for v in json.loads(value)]
    return [v for v in (p.strip() for p in value.split(",")) if v]


def guard_from_env(*, allow_s3: bool = False) -> UrlGuard | None:
    """The guard this process runs with, or None where it is off (see the module docstring)."""
    if not enabled():
        return None
    return UrlGuard.from_origins(parse_origins(_environ().get(ENV_ALLOWED, "")), allow_s3=allow_s3)


def urlopen(url: str, *, timeout: float, source: str | None = None) -> Any:
    """``urllib.request.urlopen`` through the guard when it is on, plain otherwise."""
    guard = guard_from_env()
    if guard is None:
        return urllib.request.urlopen(url, timeout=timeout)
    return guard.opener(source or url).open(url, timeout=timeout)


def check_entry(uri: str, *, playlist: str, source: str) -> None:
    """A URI read from the remote playlist ``playlist``: never a local protocol, whether or not
    the guard is on (a remote document must not make us read local files); with the guard on,
    also its rules. Raises BadSourceError naming ``source``."""
    scheme = urlsplit(uri).scheme.lower()
    if urlsplit(playlist).scheme.lower() in ("http", "https") and scheme not in ("http", "https"):
        raise BadSourceError(
            redact(source),
            f"refused playlist entry {redact(uri)}: scheme {scheme or '(none)'!r}"
            " (only http/https)",
        )
    guard = guard_from_env()
    if guard is not None:
        guard.check_url(uri, source=source)


# --------------------------------------------------------------------------- guarded media reads

#: Bytes read ahead to tell an HLS playlist from media.
_SNIFF = 7


class GuardedHttpReader(io.RawIOBase):
    """An ``http(s)`` resource read through the guard, as a file PyAV can open.

    Seekable when the origin honours ``Range`` (an MP4 whose index sits at its end needs that):
    a seek reopens the resource at the new offset, through the guard again.
    """

    def __init__(self, url: str, *, guard: UrlGuard, source: str, timeout: float = 30.0) -> None:
        super().__init__()
        self._url, self._guard, self._source, self._timeout = url, guard, source, timeout
        self._opener = guard.opener(source)
        self._resp = self._opener.open(url, timeout=timeout)
        length = self._resp.headers.get("Content-Length")
        self._size = int(length) if length and length.isdigit() else None
        ranges = self._resp.headers.get("Accept-Ranges", "").lower() == "bytes"
        self._seekable = ranges and self._size is not None
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            if self._size is None:
                raise OSError("size unknown")
            offset += self._size
        if offset == self._pos:
            return offset
        if not self._seekable:
            raise OSError("origin does not support byte ranges")
        self._resp.close()
        req = urllib.request.Request(self._url, headers={"Range": f"bytes={offset}-"})
        self._resp = self._opener.open(req, timeout=self._timeout)
        if self._resp.status != 206:
            raise OSError(f"origin ignored the byte range (HTTP {self._resp.status})")
        self._pos = offset
        return offset

    def readinto(self, b: Any) -> int:
        data = self._resp.read(len(b))
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._resp.close()
        super().close()


class GuardedPlaylistReader(io.RawIOBase):
    """An HLS playlist's MPEG-TS segments, fetched one after the other through the guard and
    read as one transport stream (what HLS's segments are); every entry was vetted when the
    playlist was parsed. A live playlist (no ``#EXT-X-ENDLIST``) gives the segments it lists
    now: following it live is :func:`vqa.live.follow`'s job."""

    def __init__(
        self, uris: list[str], *, guard: UrlGuard, source: str, timeout: float = 30.0
    ) -> None:
        super().__init__()
        self._uris, self._timeout = list(uris), timeout
        self._opener = guard.opener(source)
        self._resp: Any = None

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while True:
            if self._resp is None:
                if not self._uris:
                    return 0
                self._resp = self._opener.open(self._uris.pop(0), timeout=self._timeout)
            data = self._resp.read(len(b))
            if data:
                b[: len(data)] = data
                return len(data)
            self._resp.close()
            self._resp = None

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
        super().close()


def open_media(url: str, *, guard: UrlGuard, source: str, timeout: float = 30.0) -> io.RawIOBase:
    """``url`` (http/https) as a file for PyAV with every fetch guarded, so FFmpeg's own HTTP and
    HLS clients (which follow redirects and playlist entries unchecked) never run: an HLS
    playlist becomes its segments in a row (the first variant of a master playlist, as
    :func:`vqa.live.follow` picks), anything else the resource itself."""
    from vqa.live import parse_playlist  # vqa.live imports this module

    head = GuardedHttpReader(url, guard=guard, source=source, timeout=timeout)
    first = head.read(_SNIFF) or b""
    if not first.startswith(b"#EXTM3U"):
        head.close()  # reopened from byte 0: PyAV probes from the start
        return GuardedHttpReader(url, guard=guard, source=source, timeout=timeout)
    text = (first + head.read()).decode("utf-8", "replace")
    head.close()
    pl = parse_playlist(text, url, source)
    if pl.variants:
        variant = pl.variants[0]
        with guard.opener(source).open(variant, timeout=timeout) as resp:
            pl = parse_playlist(resp.read().decode("utf-8", "replace"), variant, source)
    if not pl.entries:
        raise BadSourceError(redact(source), "HLS playlist lists no media segments")
    for entry in pl.entries:  # all of them before the first fetch (and each again on connect)
        guard.check_url(entry.uri, source=source)
    return GuardedPlaylistReader(
        [e.uri for e in pl.entries], guard=guard, source=source, timeout=timeout
    )
