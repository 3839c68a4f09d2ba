"""A loopback server speaking the OpenAI chat-completions protocol, scripted per test.

Replies come from `server.responder(request)` when set, else from the queue filled by
`server.reply(...)`, else a 500 saying nothing was scripted. Every request is recorded, and the
most requests ever in flight at once is kept in `max_in_flight`. `request.repeat` counts the
identical requests (same body) that came before it, so a responder can answer repeated identical
questions differently, as a judge sampling at a temperature above 0 does (`alternating_verdicts`).
"""
import base64
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHAT_PATH = "/v1/chat/completions"


@dataclass
class Reply:
    status: int = 200
    body: dict | str | bytes = ""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering

    @classmethod
    def chat(cls, content: str | None, finish_reason: str = "stop", **kwargs) -> "Reply":
        return cls(body=completion(content, finish_reason), **kwargs)

    @classmethod
    def error(cls, status: int, message: str, **kwargs) -> "Reply":
        return cls(status=status, body={"error": {"message": message, "type": "invalid_request_error",
                                                  "code": None}}, **kwargs)


def completion(content: str | None, finish_reason: str = "stop") -> dict:
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": "judge",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}


@dataclass
class ChatRequest:
    path: str
    headers: dict  # lower-cased names
    body: dict | None
    received_at: float  # time.monotonic()
    repeat: int = 0  # how many identical requests (same body) came before this one

    @property
    def content(self) -> list[dict]:
        return self.body["messages"][0]["content"]

    @property
    def text(self) -> str:
        return next(part["text"] for part in self.content if part["type"] == "text")

    @property
    def image_urls(self) -> list[str]:
        return [part["image_url"]["url"] for part in self.content if part["type"] == "image_url"]

    @property
    def images(self) -> list[bytes]:
        """The bytes of each image sent, in order (they must be base64 data URLs)."""
        return [base64.b64decode(url.split(",", 1)[1]) for url in self.image_urls]


def alternating_verdicts(request: ChatRequest) -> Reply:
    """A responder for pair questions: every aspect asked gets "first" on the 1st, 3rd, 5th...
    identical request and "second" on the 2nd, 4th...: a judge whose samples disagree."""
    schema = request.body["response_format"]["json_schema"]["schema"]
    choice = "first" if request.repeat % 2 == 0 else "second"
    return Reply.chat(json.dumps({aspect: {"choice": choice, "rationale": f"try {request.repeat}"}
                                  for aspect in schema["required"]}))


class ChatServer:
    def __init__(self):
        self.requests: list[ChatRequest] = []
        self.replies: deque[Reply] = deque()
        self.responder: Callable[[ChatRequest], Reply] | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self._seen: dict[bytes, int] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.block_on_close = False
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    def reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def start(self) -> "ChatServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()  # wakes handlers still sleeping through a delay
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next_reply(self, request: ChatRequest) -> Reply:
        if request.path != CHAT_PATH:
            return Reply.error(404, f"no route {request.path}")
        if self.responder is not None:
            return self.responder(request)
        with self._lock:
            if self.replies:
                return self.replies.popleft()
        return Reply.error(500, "the test scripted no reply for this request")

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                request = ChatRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                      time.monotonic())
                with server._lock:
                    request.repeat = server._seen.get(raw, 0)
                    server._seen[raw] = request.repeat + 1
                    server.requests.append(request)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server._next_reply(request)
                    if reply.delay:
                        server._closing.wait(reply.delay)
                finally:
                    # Before answering: once the answer is out, the client may send its next request
                    # before this thread would get to count this one done.
                    with server._lock:
                        server.in_flight -= 1
                try:
                    self._send(reply)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
                    pass

            def _send(self, reply: Reply):
                body, content_type = reply.body, "text/plain; charset=utf-8"
                if isinstance(body, dict):
                    body, content_type = json.dumps(body), "application/json"
                if isinstance(body, str):
                    body = body.encode()
                self.send_response(reply.status)
                headers = {"Content-Type": content_type, **reply.headers, "Content-Length": str(len(body))}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler
