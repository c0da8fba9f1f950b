"""A local HTTP server that records every request it gets, and JPEGs whose Content Credentials live on it.

`remote_manifest_jpeg` signs a photo with `Builder.set_no_embed()` and `set_remote_url(url)`: the file then
carries no manifest, only the XMP `dcterms:provenance` reference to `url`, exactly as a cloud-stored manifest
would be announced; the manifest store itself (what `url` should serve) is returned beside it.
"""

import http.server
import io
import threading
from contextlib import contextmanager

AI_MANIFEST = {
    "claim_generator_info": [{"name": "remote generator", "version": "1.0"}],
    "assertions": [
        {
            "label": "c2pa.actions.v2",
            "data": {
                "actions": [
                    {
                        "action": "c2pa.created",
                        "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
                    }
                ]
            },
        }
    ],
}


class RecordingServer:
    """Answers GET requests from `routes` (path -> (status, headers, body)); 404 otherwise. `requests` lists
    every path asked for, in order. A header given as None is left out (`Content-Length: None`: the body
    then ends when the connection closes)."""

    def __init__(self):
        self.routes: dict[str, tuple[int, dict, bytes]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                status, headers, body = server.routes.get(self.path, (404, {}, b"not here"))
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    if value is not None:
                        self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def start(self) -> "RecordingServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@contextmanager
def recording_server():
    server = RecordingServer().start()
    try:
        yield server
    finally:
        server.stop()


def remote_manifest_jpeg(store, jpeg: bytes, url: str) -> tuple[bytes, bytes]:
    """(a JPEG that refers to Content Credentials stored at `url` and carries none, the manifest store)."""
    import c2pa

    builder = c2pa.Builder(AI_MANIFEST)
    builder.set_no_embed()
    builder.set_remote_url(url)
    signed = io.BytesIO()
    manifest = builder.sign(store.signing_identity().c2pa_signer(), "image/jpeg", io.BytesIO(jpeg), signed)
    return signed.getvalue(), manifest
