"""A small RFC 3161 Time-Stamp Authority for tests: a test CA, a TSA certificate and an HTTP endpoint."""

import datetime as dt
import hashlib
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from asn1crypto import cms, core, tsp, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

POLICY = "1.3.6.1.4.1.99999.3161.1"  # a private-arc policy OID for this test authority
KEY_USAGES = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
              "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")  # fmt: skip


def _name(common_name: str) -> cx509.Name:
    return cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: cx509.Name, issuer: cx509.Name, public_key, signing_key, *, ca: bool) -> cx509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        cx509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(cx509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(cx509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(cx509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(cx509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False)
    )
    wanted = {"key_cert_sign", "crl_sign"} if ca else {"digital_signature"}
    usage = cx509.KeyUsage(**{name: name in wanted for name in KEY_USAGES})
    builder = builder.add_extension(usage, critical=True)
    if not ca:
        builder = builder.add_extension(cx509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    return builder.sign(signing_key, hashes.SHA256())


@dataclass
class TimestampAuthority:
    """Issues its own CA and TSA certificate; `url` is set while `serve()` runs."""

    requests: list[tsp.TimeStampReq] = field(default_factory=list)
    issued: list[dt.datetime] = field(default_factory=list)  # the genTime of each token
    url: str = ""

    def __post_init__(self):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        self.key = ec.generate_private_key(ec.SECP256R1())
        root_name = _name("headshot test TSA root")
        self.root = _certificate(root_name, root_name, ca_key.public_key(), ca_key, ca=True)
        self.cert = _certificate(_name("headshot test TSA"), root_name, self.key.public_key(), ca_key, ca=False)

    @property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    def respond(self, body: bytes) -> bytes:
        """Answer a DER TimeStampReq with a granted DER TimeStampResp."""
        request = tsp.TimeStampReq.load(body)
        self.requests.append(request)
        self.issued.append(dt.datetime.now(dt.UTC).replace(microsecond=0))
        tst_info = tsp.TSTInfo(
            {
                "version": "v1",
                "policy": request["req_policy"].native or POLICY,
                "message_imprint": request["message_imprint"],
                "serial_number": secrets.randbits(63),
                "gen_time": self.issued[-1],
                "nonce": request["nonce"].native,
            }
        ).dump()
        cert = x509.Certificate.load(self.cert.public_bytes(serialization.Encoding.DER))
        sha256 = {"algorithm": "sha256"}
        signed_attrs = cms.CMSAttributes(
            [
                {"type": "content_type", "values": ["tst_info"]},
                {"type": "message_digest", "values": [hashlib.sha256(tst_info).digest()]},
                {"type": "signing_certificate_v2", "values": [{"certs": [{"cert_hash": cert.sha256}]}]},
            ]
        )
        signer = {
            "version": "v1",
            "sid": {"issuer_and_serial_number": {"issuer": cert.issuer, "serial_number": cert.serial_number}},
            "digest_algorithm": sha256,
            "signed_attrs": signed_attrs,
            "signature_algorithm": {"algorithm": "sha256_ecdsa"},
            "signature": self.key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256())),
        }
        signed_data = {
            "version": "v3",
            "digest_algorithms": [sha256],
            "encap_content_info": {"content_type": "tst_info", "content": core.ParsableOctetString(tst_info)},
            "certificates": [cert] if request["cert_req"].native else [],
            "signer_infos": [signer],
        }
        token = cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed_data)})
        return tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()

    @contextmanager
    def serve(self) -> Iterator["TimestampAuthority"]:
        """Run the authority on 127.0.0.1 (a free port) in a background thread."""
        authority = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                if self.headers.get("Content-Type") != "application/timestamp-query":
                    self.send_error(415)
                    return
                reply = authority.respond(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                """Keep test output quiet."""

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_port}/tsa"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
