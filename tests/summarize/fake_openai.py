"""A scripted OpenAI-compatible chat completions server, run by the LLM tests as a separate process.

    python tests/summarize/fake_openai.py --dir DIR [--port 0] [--api-key KEY]

It prints ``PORT <n>`` on stdout once it listens, then serves
``POST /<scenario>/v1/chat/completions`` (and ``/v1/chat/completions``, scenario ``default``), and
``POST /<scenario>/hook`` — any body, for the fault drills' notification receiver: a process that
can be down, answer 500, then come back. Each scenario is scripted by ``DIR/<scenario>.json``, read
on every request so a test can write it just before using it, or rewrite it to change the answer::

    {"responses": [
        {"status": 429, "headers": {"Retry-After": "1"}, "body": "slow down"},
        {"delay": 2.0, "content": "..."},                  # sleeps first: provokes client timeouts
        {"content": "{\\"summary\\": []}"},                # wrapped in a chat.completion envelope
        {"json": {"summary": []}},                         # content = that JSON, dumped
        {"body": "not a chat completion"}                  # the raw response body
    ]}

The n-th request of a scenario gets the n-th response; the last one repeats. Every request is
appended to ``DIR/<scenario>.jsonl`` as ``{"n", "path", "headers", "raw", "body", "scripted_status"}``
*before* the answer is sent (or the delay starts), so a test can read what a timed-out request carried.

Like a real endpoint it checks what it is sent: a body that is not a JSON chat request gets 400
(hooks take any body), and with ``--api-key`` a missing or wrong bearer token gets 401.
"""

from __future__ import annotations

import argparse
import json
import re
import select
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

_SCENARIO = re.compile(r"^/(?:(?P<scenario>[A-Za-z0-9_.-]+)/)?v1/chat/completions$")
_HOOK = re.compile(r"^/(?P<scenario>[A-Za-z0-9_.-]+)/hook$")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], folder: Path, api_key: str) -> None:
        super().__init__(address, _Handler)
        self.folder = folder
        self.api_key = api_key
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        hook = _HOOK.match(self.path)
        match = hook or _SCENARIO.match(self.path)
        if match is None:
            self._send(404, {}, _error("no such endpoint", "not_found"))
            return
        scenario = match.group("scenario") or "default"
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        with self.server.lock:
            n = self.server.counts.get(scenario, 0)
            self.server.counts[scenario] = n + 1
            reply, problem = self._scripted(scenario, n)  # read with the count: the log says what
            record = {
                "n": n,
                "path": self.path,
                "headers": dict(self.headers.items()),
                "raw": raw.decode("utf-8", "replace"),
                "body": body,
                "scripted_status": int(reply.get("status", 200)) if reply is not None else None,
            }
            with (self.server.folder / f"{scenario}.jsonl").open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        if self.server.api_key and self.headers.get("Authorization") != f"Bearer {self.server.api_key}":
            self._send(401, {}, _error("invalid api key", "invalid_api_key"))
            return
        if not hook and (
            not isinstance(body, dict)
            or not isinstance(body.get("messages"), list)
            or not isinstance(body.get("model"), str)
        ):
            self._send(400, {}, _error("expected a JSON chat completions request", "invalid_request"))
            return
        if reply is None:
            self._send(500, {}, _error(f"fake server: no script for {scenario}: {problem}", "no_script"))
            return
        time.sleep(float(reply.get("delay", 0)))
        if "body" in reply or hook:
            payload = str(reply.get("body", "")).encode()
        else:
            content = reply["content"] if "content" in reply else json.dumps(reply.get("json"))
            payload = json.dumps(_completion(n, body["model"], content)).encode()
        self._send(int(reply.get("status", 200)), reply.get("headers", {}), payload)

    def _scripted(self, scenario: str, n: int) -> tuple[dict[str, Any] | None, str]:
        """The n-th answer of ``scenario``'s script (the last one repeating), or why there is none."""
        try:
            script = json.loads((self.server.folder / f"{scenario}.json").read_text(encoding="utf-8"))
            responses = script["responses"]
            return responses[min(n, len(responses) - 1)], ""
        except (OSError, ValueError, KeyError, IndexError) as exc:
            return None, str(exc)

    def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in headers.items():
                self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up waiting (the timeout tests)
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


def _completion(n: int, model: str, content: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-fake-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def _error(message: str, code: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": code}}).encode()


class FakeOpenAI:
    """The tests' handle on a server process: start it, script scenarios, read what it received.

    Use as a context manager; each :meth:`scenario` gets a fresh name, so tests sharing one
    process never see each other's requests.
    """

    def __init__(self, folder: Path, api_key: str = "", port: int = 0) -> None:
        self.folder = folder
        self.api_key = api_key
        self.port = port  # 0: any free port; a fixed one lets a drill bring an endpoint "back"
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> FakeOpenAI:
        argv = [sys.executable, str(Path(__file__).resolve()), "--dir", str(self.folder)]
        argv += ["--port", str(self.port)]
        if self.api_key:
            argv += ["--api-key", self.api_key]
        self._process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], 20)
        line = self._process.stdout.readline() if ready else ""
        if not line.startswith("PORT "):
            self.__exit__(None, None, None)
            raise RuntimeError(f"fake OpenAI server did not start (said {line!r})")
        self.port = int(line.split()[1])
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None

    def scenario(self, *responses: dict[str, Any]) -> str:
        """A new scenario answering with ``responses`` in order; its base URL (``…/v1``)."""
        name = uuid.uuid4().hex[:12]
        self.script(name, *responses)
        return f"http://127.0.0.1:{self.port}/{name}/v1"

    def script(self, name: str, *responses: dict[str, Any]) -> None:
        """(Re)write scenario ``name``'s answers; works before the server starts, and while it runs."""
        (self.folder / f"{name}.json").write_text(json.dumps({"responses": list(responses)}), "utf-8")

    def requests(self, base_url: str) -> list[dict[str, Any]]:
        """Every request the scenario of ``base_url`` (``…/<name>/v1`` or ``…/<name>/hook``) received."""
        name = base_url.rstrip("/").rsplit("/", 2)[-2]
        path = self.folder / f"{name}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dir", required=True, type=Path, help="scripts in, request logs out")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="", help="require this bearer token")
    args = parser.parse_args(argv)
    server = _Server(("127.0.0.1", args.port), args.dir, args.api_key)
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
