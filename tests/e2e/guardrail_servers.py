"""Local HTTP servers for the guardrail drills, run in threads of the test process:

- :class:`ScriptedLLM`, an OpenAI-compatible chat endpoint whose first answer is a fixed
  tool call and whose answer after a tool result quotes it — the worker reaches it as the
  provider ``fake`` (``CADENZA_LLM_PROVIDERS__FAKE__BASE_URL``);
- :class:`Target`, the system the agent acts on: it counts every request by method and
  path, and can hang on one path (to kill a worker between sending and recording).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Target(_Server):
    """Counts requests as ``"METHOD /path"``; requests to ``hang_path`` never get an answer
    until :meth:`close` (the worker is killed while it waits)."""

    def __init__(self, hang_path: str | None = None) -> None:
        self.hits: Counter[str] = Counter()
        self.hang_path = hang_path
        self.release = threading.Event()
        self._lock = threading.Lock()
        super().__init__(_TargetHandler)

    def count(self, call: str) -> int:
        with self._lock:
            return self.hits[call]

    def close(self) -> None:
        self.release.set()
        super().close()


class _TargetHandler(_Quiet):
    def _handle(self) -> None:
        target: Target = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with target._lock:
            target.hits[f"{self.command} {self.path}"] += 1
        if self.path == target.hang_path:
            target.release.wait(120)
            return
        self._reply(200, {"ok": True, "method": self.command, "path": self.path})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class ScriptedLLM(_Server):
    """First turn: call ``tool`` with ``arguments`` (saying ``said``). After a tool result:
    answer ``"observed: <the tool message>"``. Requests are kept for assertions."""

    def __init__(self, tool: str, arguments: dict[str, Any], said: str = "") -> None:
        self.tool, self.arguments, self.said = tool, arguments, said
        self.requests: list[dict[str, Any]] = []
        super().__init__(_LLMHandler)

    def tool_observations(self) -> list[str]:
        """The tool results the model was shown, in order."""
        seen: list[str] = []
        for request in self.requests:
            for message in request.get("messages", []):
                content = str(message.get("content"))
                if message.get("role") == "tool" and content not in seen:
                    seen.append(content)
        return seen


class _LLMHandler(_Quiet):
    def do_POST(self) -> None:
        llm: ScriptedLLM = self.server.owner  # type: ignore[attr-defined]
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        llm.requests.append(request)
        messages = request.get("messages", [])
        last = messages[-1] if messages else {}
        if last.get("role") == "tool":
            message: dict[str, Any] = {
                "role": "assistant",
                "content": f"observed: {str(last.get('content'))[:300]}",
            }
            finish = "stop"
        else:
            call = {
                "id": f"call_{len(llm.requests)}",
                "type": "function",
                "function": {"name": llm.tool, "arguments": json.dumps(llm.arguments)},
            }
            message = {"role": "assistant", "content": llm.said, "tool_calls": [call]}
            finish = "tool_calls"
        self._reply(
            200,
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": request.get("model", "scripted"),
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            },
        )
