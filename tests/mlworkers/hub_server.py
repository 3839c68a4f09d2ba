"""A loopback Hugging Face Hub: the parts of its protocol huggingface_hub uses to resolve a
revision and download a model's files, serving repos a test builds from local folders.

- `GET /api/models/{repo}[/revision/{revision}]`: the repo's commit (`sha`) and files (`siblings`);
- `HEAD|GET /{repo}/resolve/{revision}/{path}`: a small file is answered in place, with
  `X-Repo-Commit`, `ETag` (its git blob sha1) and `Content-Length`; a weights file (LFS on the Hub)
  is a 302 to a signed URL on another origin (the "CDN", a second server), carrying `X-Repo-Commit`,
  `X-Linked-Etag` (its sha256) and `X-Linked-Size`, as the Hub does;
- the CDN serves blobs by sha256, with `Range` requests (a resumed download).

Errors as the Hub gives them: 404 with `X-Error-Code: RepoNotFound` / `RevisionNotFound` /
`EntryNotFound`; 401 for a private repo asked without its token. A test can cut a blob's next
download mid-file (`interrupt`): the connection closes half way and the CDN answers 503 after
that until `restore`. Every request is recorded (`requests`, with the Authorization header seen).
"""
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


@dataclass
class Request:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    authorization: str | None


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> {path: content}
    branches: dict[str, str] = field(default_factory=dict)
    private: bool = False


def git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class HubServer:
    def __init__(self, token: str = ""):
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}  # sha256 -> content
        self.token = token
        self.requests: list[Request] = []
        self.interrupted: dict[str, str] = {}  # sha256 -> "cut" (next download) or "down"
        self._lock = threading.Lock()
        self._hub = ThreadingHTTPServer(("127.0.0.1", 0), self._handler("hub"))
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), self._handler("cdn"))
        self.endpoint = f"http://127.0.0.1:{self._hub.server_address[1]}"
        self.cdn = f"http://127.0.0.1:{self._cdn.server_address[1]}"

    # --- what it serves ---------------------------------------------------------------------------

    def add_commit(self, repo_id: str, files: dict[str, bytes] | Path, *, branch: str = "main",
                   private: bool = False) -> str:
        """Commit `files` (a dict, or every file under a folder) as the new head of `branch`; returns the sha."""
        if isinstance(files, Path):
            files = {p.relative_to(files).as_posix(): p.read_bytes() for p in sorted(files.rglob("*")) if p.is_file()}
        repo = self.repos.setdefault(repo_id, Repo())
        repo.private = repo.private or private
        parent = repo.branches.get(branch, "")
        sha = hashlib.sha1(json.dumps([repo_id, parent, {k: git_blob_sha1(v) for k, v in sorted(files.items())}])
                           .encode()).hexdigest()
        repo.commits[sha] = dict(files)
        repo.branches[branch] = sha
        for path, content in files.items():
            if path.endswith(LFS_SUFFIXES):
                self.blobs[hashlib.sha256(content).hexdigest()] = content
        return sha

    def interrupt(self, content: bytes) -> None:
        """The next download of `content` closes half way; the CDN then answers 503 for it."""
        self.interrupted[hashlib.sha256(content).hexdigest()] = "cut"

    def restore(self) -> None:
        self.interrupted.clear()

    def requests_to(self, server: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if server in (None, r.server)]

    # --- running ----------------------------------------------------------------------------------

    def start(self) -> "HubServer":
        for server in (self._hub, self._cdn):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()

    # --- the protocol -----------------------------------------------------------------------------

    def _handler(self, name: str):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self._serve(body=True)

            def do_HEAD(self):
                self._serve(body=False)

            def _serve(self, body: bool):
                with hub._lock:
                    hub.requests.append(Request(name, self.command, self.path, self.headers.get("Authorization")))
                try:
                    status, headers, content = (hub._hub_answer if name == "hub" else hub._cdn_answer)(self)
                except _Cut as cut:
                    self._send(200, cut.headers, cut.content, body=body, cut=True)
                    return
                self._send(status, headers, content, body=body)

            def _send(self, status, headers, content, *, body, cut=False):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if body:
                    self.wfile.write(content[:len(content) // 2] if cut else content)
                    self.wfile.flush()
                if cut:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        return Handler

    def _authorized(self, repo: Repo, handler) -> bool:
        return not repo.private or (bool(self.token) and handler.headers.get("Authorization") == f"Bearer {self.token}")

    def _hub_answer(self, handler):
        path = urlsplit(handler.path).path
        if path.startswith("/api/models/"):
            return self._model_info(handler, path[len("/api/models/"):])
        parts = path.lstrip("/").split("/", 4)
        if len(parts) == 5 and parts[2] == "resolve":
            return self._resolve(handler, f"{parts[0]}/{parts[1]}", unquote(parts[3]), unquote(parts[4]))
        return 404, {}, b"not found"

    def _find(self, handler, repo_id: str, revision: str):
        """(repo, sha) or an error answer."""
        repo = self.repos.get(repo_id)
        if repo is None:
            return None, (404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"},
                          b'{"error": "Repository not found"}')
        if not self._authorized(repo, handler):
            return None, (401, {"X-Error-Message": "Invalid username or password."}, b'{"error": "Unauthorized"}')
        sha = repo.branches.get(revision) or (revision if revision in repo.commits else None)
        if sha is None:
            return None, (404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"},
                          b'{"error": "Invalid rev id"}')
        return (repo, sha), None

    def _model_info(self, handler, rest: str):
        repo_id, _, revision = unquote(rest).partition("/revision/")
        found, error = self._find(handler, repo_id, revision or "main")
        if error:
            return error
        repo, sha = found
        info = {"_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.private,
                "siblings": [{"rfilename": name} for name in sorted(repo.commits[sha])]}
        return 200, {"Content-Type": "application/json"}, json.dumps(info).encode()

    def _resolve(self, handler, repo_id: str, revision: str, filename: str):
        found, error = self._find(handler, repo_id, revision)
        if error:
            return error
        repo, sha = found
        content = repo.commits[sha].get(filename)
        if content is None:
            return 404, {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found",
                         "X-Repo-Commit": sha}, b'{"error": "Entry not found"}'
        if filename.endswith(LFS_SUFFIXES):
            digest = hashlib.sha256(content).hexdigest()
            return 302, {"Location": f"{self.cdn}/blobs/{digest}?signature=loopback", "X-Repo-Commit": sha,
                         "X-Linked-Etag": f'"{digest}"', "X-Linked-Size": str(len(content)),
                         "ETag": f'"{git_blob_sha1(content)}"'}, b""
        return 200, {"X-Repo-Commit": sha, "ETag": f'"{git_blob_sha1(content)}"',
                     "Content-Type": "application/octet-stream"}, content

    def _cdn_answer(self, handler):
        digest = urlsplit(handler.path).path.rpartition("/")[2]
        content = self.blobs.get(digest)
        if content is None:
            return 404, {}, b"no such blob"
        state = self.interrupted.get(digest)
        if state == "down":
            return 503, {}, b"unavailable"
        start = 0
        wanted = handler.headers.get("Range", "")
        if wanted.startswith("bytes="):
            start = int(wanted[len("bytes="):].partition("-")[0] or 0)
        if state == "cut" and handler.command == "GET":
            self.interrupted[digest] = "down"
            raise _Cut({"Content-Length": str(len(content)), "ETag": f'"{digest}"'}, content)
        if start:
            part = content[start:]
            return 206, {"Content-Range": f"bytes {start}-{len(content) - 1}/{len(content)}",
                         "ETag": f'"{digest}"'}, part
        return 200, {"ETag": f'"{digest}"', "Accept-Ranges": "bytes"}, content


class _Cut(Exception):
    def __init__(self, headers, content):
        super().__init__("cut")
        self.headers, self.content = headers, content
