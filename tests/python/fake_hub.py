"""A stand-in for the Hugging Face Hub's file API on loopback, for the model cache tests
(this machine has no internet): serves the repos under a directory with

    GET /api/models/ORG/NAME/revision/main?blobs=true   the listing: siblings with size and
                                                        git blob id, plus lfs.sha256 for
                                                        files over LFS_THRESHOLD bytes
    GET /ORG/NAME/resolve/main/PATH                     the file, honouring Range

and can misbehave on purpose: drop the connection part-way through a file (once), answer
one request for a file with an error status, or serve corrupted bytes. Every request is recorded."""
import hashlib
import http.server
import json
import pathlib
import threading
import urllib.parse

LFS_THRESHOLD = 10_000


class FakeHub:
    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.requests = []        # (path, range header, authorization header)
        self.drop_after = {}      # file path in repo -> bytes to send before hanging up (once)
        self.corrupt = set()      # file paths served with one byte flipped
        self.fail_once = {}       # file path in repo -> HTTP status answered once
        self.require_token = None
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                hub.requests.append((self.path, self.headers.get("Range"),
                                     self.headers.get("Authorization")))
                if hub.require_token and \
                        self.headers.get("Authorization") != f"Bearer {hub.require_token}":
                    return self.send_bytes(401, b'{"error":"unauthorized"}')
                url = urllib.parse.urlparse(self.path)
                parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
                if parts[:2] == ["api", "models"] and parts[4:6] == ["revision", "main"]:
                    return self.listing(parts[2], parts[3])
                if len(parts) >= 5 and parts[2:4] == ["resolve", "main"]:
                    return self.file(parts[0], parts[1], "/".join(parts[4:]))
                self.send_bytes(404, b'{"error":"not found"}')

            def send_bytes(self, code, body, headers=()):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def listing(self, org, name):
                repo = hub.root / org / name
                if not repo.is_dir():
                    return self.send_bytes(404, b'{"error":"Repository not found"}')
                siblings = []
                for f in sorted(p for p in repo.rglob("*") if p.is_file()):
                    data = f.read_bytes()
                    entry = {"rfilename": str(f.relative_to(repo)), "size": len(data),
                             "blobId": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
                    if len(data) > LFS_THRESHOLD:
                        entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(),
                                        "size": len(data), "pointerSize": 134}
                    siblings.append(entry)
                self.send_bytes(200, json.dumps({"id": f"{org}/{name}",
                                                 "siblings": siblings}).encode(),
                                [("Content-Type", "application/json")])

            def file(self, org, name, path):
                f = hub.root / org / name / path
                if not f.is_file():
                    return self.send_bytes(404, b'{"error":"Entry not found"}')
                if path in hub.fail_once:
                    return self.send_bytes(hub.fail_once.pop(path), b'{"error":"try later"}')
                data = f.read_bytes()
                if path in hub.corrupt:
                    data = data[:-1] + bytes([data[-1] ^ 0xFF])
                start, code, headers = 0, 200, []
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                    code = 206
                    headers.append(("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"))
                body = data[start:]
                cut = hub.drop_after.pop(path, None)
                if cut is None:
                    return self.send_bytes(code, body, headers)
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True  # hang up short of Content-Length

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def file_requests(self):
        return [r for r in self.requests if "/resolve/" in r[0]]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
