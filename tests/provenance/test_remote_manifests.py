"""Remote manifests (a file's XMP `dcterms:provenance` URL): never fetched by default; fetched only from an
operator's allowed hosts at public addresses, re-checked on every redirect, within size and time limits.

The fetch path is exercised against a real HTTP server on 127.0.0.1. Loopback is refused by design, so the
tests that must reach it say so explicitly with `address_allowed` (loopback admitted, nothing else changed);
every test that keeps the default check shows the refusal instead.
"""

import ipaddress
import socket

import c2pa
import pytest

from provenance import verify_image
from provenance.remote_manifests import RemoteManifestFetcher, RemoteManifestRefused, is_public_address
from tests.conftest import encode, face_image
from tests.provenance.manifest_server import recording_server, remote_manifest_jpeg


def loopback_only(address) -> bool:
    """For tests only: admit this machine's loopback addresses, which the default check refuses."""
    return address.is_loopback


@pytest.fixture(scope="module")
def photo() -> bytes:
    return encode(face_image(size=256), "JPEG", quality=90)


@pytest.fixture
def server():
    with recording_server() as server:
        yield server


@pytest.fixture
def remote(server, store, photo):
    """JPEGs referring to their manifests on the server, as 127.0.0.1 and as localhost, and the first's manifest."""
    data, manifest = remote_manifest_jpeg(store, photo, server.url("/manifest.c2pa"))
    by_name, named = remote_manifest_jpeg(store, photo, server.url("/named.c2pa", host="localhost"))
    server.routes["/manifest.c2pa"] = (200, {"Content-Type": "application/c2pa"}, manifest)
    server.routes["/named.c2pa"] = (200, {"Content-Type": "application/c2pa"}, named)
    return data, by_name, manifest


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # shared address space (CGNAT)
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("240.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:10.0.0.1", False),  # IPv4-mapped
        ("2002:7f00:1::", False),  # 6to4 around 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 (all of it: Python counts ::/8 as reserved)
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("2606:4700:4700::1111", True),
    ],
)
def test_public_addresses_only(address, public):
    assert is_public_address(ipaddress.ip_address(address)) is public


def test_the_readers_setting_really_stops_the_fetch(server, remote, store):
    """c2pa accepts unknown settings silently: the reader context must really not fetch."""
    import io

    data, _, _ = remote
    with pytest.raises(c2pa.C2paError, match="must fetch remote manifests from url"):
        c2pa.Reader("image/jpeg", io.BytesIO(data), context=store.trust_anchors().c2pa_context())
    assert server.requests == []


def test_verify_reports_the_reference_and_fetches_nothing(server, remote, store):
    data, _, _ = remote
    verdict = verify_image(data, store.trust_anchors(), name="remote.jpg")
    assert server.requests == []
    assert verdict.label == "no_provenance" and verdict.c2pa.state == "none"
    assert verdict.c2pa.remote_manifest_url == server.url("/manifest.c2pa")
    assert f"refers to Content Credentials stored at 127.0.0.1:{server.port}; not fetched" in [
        item.detail for item in verdict.evidence
    ]
    assert "stored elsewhere, which were not read" in verdict.summary


def test_default_check_refuses_a_loopback_host_even_when_allowed(server, remote, store):
    _, by_name, _ = remote
    fetcher = RemoteManifestFetcher.for_hosts("localhost")
    verdict = verify_image(by_name, store.trust_anchors(), remote_manifests=fetcher)
    assert server.requests == []
    assert verdict.label == "no_provenance"
    assert any("not fetched: localhost resolves to a non-public address" in e.detail for e in verdict.evidence)


def test_a_host_not_on_the_list_is_not_fetched(server, remote, store):
    data, _, _ = remote
    fetcher = RemoteManifestFetcher.for_hosts("manifests.example.com, other.example.org")
    verdict = verify_image(data, store.trust_anchors(), remote_manifests=fetcher)
    assert server.requests == []
    assert any("is not a host this server's operator allows" in e.detail for e in verdict.evidence)


def test_an_allowed_host_is_fetched_and_the_manifest_validated(server, remote, store):
    _, by_name, manifest = remote
    fetcher = RemoteManifestFetcher(frozenset({"localhost"}), address_allowed=loopback_only)
    verdict = verify_image(by_name, store.trust_anchors(), remote_manifests=fetcher)
    assert server.requests == ["/named.c2pa"]
    assert verdict.label == "ai_verified" and verdict.c2pa.state == "trusted"
    assert verdict.evidence[0].detail.startswith(f"Content Credentials fetched from localhost:{server.port}")
    # that manifest served for another photo: its hash binding fails, as an embedded one's would
    other, _ = remote_manifest_jpeg(store, encode(face_image("img2.jpg", 256), "JPEG"), server.url("/x", "localhost"))
    server.routes["/x"] = (200, {}, manifest)
    swapped = verify_image(other, store.trust_anchors(), remote_manifests=fetcher)
    assert swapped.label == "invalid_credentials" and "assertion.dataHash.mismatch" in swapped.c2pa.failure_codes


def test_redirects_are_checked_again(server, remote):
    _, _, manifest = remote
    server.routes.update(
        {
            "/hop": (302, {"Location": "/manifest.c2pa"}, b""),
            "/to-unlisted": (302, {"Location": server.url("/manifest.c2pa", host="127.0.0.1")}, b""),
            "/to-other-address": (302, {"Location": server.url("/manifest.c2pa", host="127.0.0.2")}, b""),
            "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
        }
    )
    only_127_0_0_1 = RemoteManifestFetcher(
        frozenset({"localhost", "127.0.0.2"}),
        address_allowed=lambda address: loopback_only(address) and address != ipaddress.ip_address("127.0.0.2"),
    )
    assert only_127_0_0_1.fetch(server.url("/hop", "localhost")) == manifest
    assert server.requests == ["/hop", "/manifest.c2pa"]
    server.requests.clear()
    refusals = {
        "/to-unlisted": "127.0.0.1:{port} is not a host this server's operator allows",
        "/to-other-address": "127.0.0.2 resolves to a non-public address",
        "/to-file": "only http and https URLs are fetched, not file",
        "/loop": "more than 3 redirects",
    }
    for path, message in refusals.items():
        with pytest.raises(RemoteManifestRefused, match=message.format(port=server.port)):
            only_127_0_0_1.fetch(server.url(path, "localhost"))
    assert "/manifest.c2pa" not in server.requests  # no redirect reached a refused target


def test_size_and_time_limits(server, remote):
    small = RemoteManifestFetcher(frozenset({"localhost"}), address_allowed=loopback_only, max_bytes=1000)
    with pytest.raises(RemoteManifestRefused, match="is over 1,000 bytes"):
        small.fetch(server.url("/manifest.c2pa", "localhost"))  # by its Content-Length
    server.routes["/undeclared"] = (200, {"Content-Length": None}, b"x" * 5000)
    with pytest.raises(RemoteManifestRefused, match="is over 1,000 bytes"):
        small.fetch(server.url("/undeclared", "localhost"))  # counted as it arrives
    server.routes["/small"] = (200, {"Content-Length": None}, b"0123456789")
    assert small.fetch(server.url("/small", "localhost")) == b"0123456789"

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        port = silent.getsockname()[1]
        patient = RemoteManifestFetcher(frozenset({"localhost"}), address_allowed=loopback_only, timeout_seconds=0.5)
        with pytest.raises(RemoteManifestRefused, match=r"did not answer within 0\.5 s"):
            patient.fetch(f"http://localhost:{port}/manifest.c2pa")


def test_other_answers_are_refusals(server):
    fetcher = RemoteManifestFetcher(frozenset({"localhost"}), address_allowed=loopback_only)
    with pytest.raises(RemoteManifestRefused, match="answered HTTP 404"):
        fetcher.fetch(server.url("/missing", "localhost"))
    with pytest.raises(RemoteManifestRefused, match="user name or password"):
        fetcher.fetch(f"http://user:secret@localhost:{server.port}/manifest.c2pa")
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    with pytest.raises(RemoteManifestRefused, match="could not be reached"):
        fetcher.fetch(f"http://localhost:{port}/manifest.c2pa")
    assert RemoteManifestFetcher.for_hosts(" , ") is None
