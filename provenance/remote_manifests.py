"""Content Credentials stored elsewhere ("remote manifests"): never fetched, unless the operator allows a host.

A file may carry, instead of its manifest, a URL saying where its Content Credentials are stored (XMP
`dcterms:provenance`). Fetching that URL whenever someone uploads such a file would let any visitor make
this server send requests wherever they like (server-side request forgery): to internal hosts and ports,
to cloud metadata services, or to a host that never answers. So no reader here fetches anything
(`TrustAnchors.c2pa_context` turns c2pa's own fetching off), and `verify_image` reports the reference as
evidence ("refers to Content Credentials stored at HOST; not fetched").

An operator may name hosts whose manifests are fetched (`RemoteManifestFetcher`, HEADSHOT_REMOTE_MANIFEST_HOSTS
in the service). Even then a URL is fetched only over http or https, only from a host on that list, only
if every address the host resolves to is public (not loopback, private, link-local, shared, multicast or
reserved; checked after DNS resolution, and the connection goes to the address that was checked), and
the same checks apply again to every redirect; the answer must come within a time limit and a size limit.
"""

import http.client
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# c2pa's message when a file refers to a remote manifest and fetching is off.
_REMOTE_REFERENCE = re.compile(r"must fetch remote manifests from url (\S+)")
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024


class RemoteManifestRefused(Exception):
    """A remote manifest was not fetched; the message says why and may be shown to whoever sent the file."""


def remote_manifest_url(error: Exception) -> str | None:
    """The URL of the remote manifest a c2pa error says the file refers to, if that is what it says."""
    match = _REMOTE_REFERENCE.search(str(error))
    return match.group(1) if match else None


def where(url: str) -> str:
    """The host (and port) a URL names, without any user name or password, for messages."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    return netloc or url[:100]


def is_public_address(address: IPAddress) -> bool:
    """True for an address on the public internet; False for loopback, private, link-local, shared (CGNAT),
    multicast, reserved and unspecified ones, also when an IPv6 address embeds such an IPv4 address
    (IPv4-mapped, 6to4, Teredo; NAT64's 64:ff9b::/96 lies in ::/8, which counts as reserved)."""
    embedded: list[ipaddress.IPv4Address] = []
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            embedded.append(address.ipv4_mapped)
        if address.sixtofour:
            embedded.append(address.sixtofour)
        if address.teredo:
            embedded.extend(address.teredo)
    for candidate in (address, *embedded):
        if (
            not candidate.is_global
            or candidate.is_private
            or candidate.is_loopback
            or candidate.is_link_local
            or candidate.is_multicast
            or candidate.is_reserved
            or candidate.is_unspecified
        ):
            return False
    return True


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the system resolver)."""
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


@dataclass(frozen=True)
class _Target:
    url: str
    scheme: str
    host: str
    port: int
    path: str
    addresses: list[str]  # every one checked


@dataclass(frozen=True)
class RemoteManifestFetcher:
    """Fetches remote manifests from the operator's allowed hosts only, with every check in the module docstring.

    `address_allowed` decides which resolved addresses may be connected to (default: public ones only);
    `resolve` turns a host name into addresses.
    """

    allowed_hosts: frozenset[str]
    timeout_seconds: float = 5.0
    max_bytes: int = 5_000_000
    max_redirects: int = 3
    address_allowed: Callable[[IPAddress], bool] = is_public_address
    resolve: Callable[[str, int], list[str]] = resolve

    @classmethod
    def for_hosts(cls, hosts: str, **options) -> "RemoteManifestFetcher | None":
        """A fetcher for a comma-separated list of host names; None when the list is empty (fetching is off)."""
        names = frozenset(name.strip().lower().rstrip(".") for name in hosts.split(",") if name.strip())
        return cls(names, **options) if names else None

    def fetch(self, url: str) -> bytes:
        """The manifest store at `url`; raises RemoteManifestRefused when it may not or could not be fetched."""
        deadline = time.monotonic() + self.timeout_seconds
        for _ in range(self.max_redirects + 1):
            target = self._checked(url)
            status, location, body = self._get(target, deadline)
            if status in _REDIRECTS:
                if not location:
                    raise RemoteManifestRefused(f"{where(url)} answered a redirect without a location")
                url = urljoin(url, location)
                continue
            if status != 200:
                raise RemoteManifestRefused(f"{where(url)} answered HTTP {status}")
            return body
        raise RemoteManifestRefused(f"more than {self.max_redirects} redirects")

    def _checked(self, url: str) -> _Target:
        """Refuse a URL whose scheme, host or resolved addresses are not allowed."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise RemoteManifestRefused("the URL is malformed") from None
        if parts.scheme not in ("http", "https"):
            raise RemoteManifestRefused(f"only http and https URLs are fetched, not {parts.scheme or 'this'}")
        host = (parts.hostname or "").rstrip(".")
        if host not in self.allowed_hosts:
            raise RemoteManifestRefused(f"{where(url)} is not a host this server's operator allows")
        if parts.username or parts.password:
            raise RemoteManifestRefused("URLs with a user name or password are not fetched")
        try:
            addresses = self.resolve(host, port)
        except (OSError, UnicodeError):
            raise RemoteManifestRefused(f"{host} does not resolve") from None
        if not addresses:
            raise RemoteManifestRefused(f"{host} does not resolve")
        for address in addresses:
            if not self.address_allowed(ipaddress.ip_address(address.split("%")[0])):
                raise RemoteManifestRefused(f"{host} resolves to a non-public address")
        path = parts.path or "/"
        return _Target(url, parts.scheme, host, port, path + (f"?{parts.query}" if parts.query else ""), addresses)

    def _get(self, target: _Target, deadline: float) -> tuple[int, str | None, bytes]:
        """GET the target from an address that was checked (TLS verified against the host name)."""

        def remaining() -> float:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RemoteManifestRefused(f"{target.host} did not answer within {self.timeout_seconds:g} s")
            return left

        connection = http.client.HTTPConnection(target.host, target.port, timeout=remaining())
        try:
            sock = _connect(target, remaining)
            if target.scheme == "https":
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
            sock.settimeout(remaining())
            connection.sock = sock
            connection.request("GET", target.path, headers={"Accept": "application/c2pa", "User-Agent": "headshot"})
            response = connection.getresponse()
            declared = response.getheader("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise RemoteManifestRefused(f"the manifest at {where(target.url)} is over {self.max_bytes:,} bytes")
            body = bytearray()
            while chunk := response.read(_CHUNK):  # each read waits at most the socket's timeout
                remaining()
                body += chunk
                if len(body) > self.max_bytes:
                    raise RemoteManifestRefused(f"the manifest at {where(target.url)} is over {self.max_bytes:,} bytes")
            return response.status, response.getheader("location"), bytes(body)
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, TimeoutError) or time.monotonic() >= deadline:
                raise RemoteManifestRefused(f"{target.host} did not answer within {self.timeout_seconds:g} s") from None
            raise RemoteManifestRefused(f"{where(target.url)} could not be reached") from None
        finally:
            connection.close()


def _connect(target: _Target, remaining: Callable[[], float]) -> socket.socket:
    """A connection to the first of the target's checked addresses that answers."""
    error: OSError | None = None
    for address in target.addresses:
        try:
            return socket.create_connection((address, target.port), timeout=remaining())
        except OSError as exc:
            error = exc
    raise error or OSError("no address")
