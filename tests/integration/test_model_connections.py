"""Model clients share their HTTP connections: runs against a real HTTP endpoint on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2
import pytest
from pydantic import SecretStr

from brainstack import Runtime, Settings
from brainstack.agents.offline import OfflineModel

GROUP_CHAT_TASK = "Should we launch a freemium tier?"


class _Endpoint(ThreadingHTTPServer):
    """The offline model served over HTTP/1.1 with keep-alive; counts the connections it accepts."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.model = OfflineModel(termination_word="TERMINATE", team=["CTO", "CMO", "CFO"])
        self.connections = 0
        self.requests = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client may send many requests on one connection
    server: _Endpoint

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = httpx2.Request("POST", f"http://127.0.0.1{self.path}", content=body)
        response = self.server.model.handle(request)
        with self.server.lock:
            self.server.requests += 1
        self.send_response(response.status_code)
        self.send_header("Content-Type", response.headers.get("content-type", "application/json"))
        self.send_header("Content-Length", str(len(response.content)))
        self.end_headers()
        self.wfile.write(response.content)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[_Endpoint]:
    server = _Endpoint()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _runtime(endpoint: _Endpoint, tmp_path, cache_dir, embedder) -> Runtime:
    settings = Settings(
        home=tmp_path / "home",
        cache_dir=cache_dir,
        provider="openai",
        openai_api_key=SecretStr("sk-test-not-a-secret"),
        openai_base_url=endpoint.url,
        memory=False,
        model_max_retries=0,
    )
    return Runtime(settings, embedder=embedder)


def test_a_group_chat_and_the_runs_after_it_share_one_connection(endpoint, tmp_path, cache_dir, embedder):
    """The three members and the selector each had a connection pool of their own, made per chat:
    every group chat opened four connections (a TLS handshake each, against a real endpoint)."""
    with _runtime(endpoint, tmp_path, cache_dir, embedder) as runtime:
        first = runtime.run(GROUP_CHAT_TASK)
        assert first.route.kind == "group_chat"
        assert len(first.speakers) >= 3
        second = runtime.run(GROUP_CHAT_TASK)  # a new chat: new model clients, the same pool
        assert second.route.kind == "group_chat"
        runtime.run("What is 17.5% of 2340?")  # a specialist: the same pool again
    assert endpoint.requests >= 8
    assert endpoint.connections == 1


def test_a_closed_runtime_runs_again_on_new_connections(endpoint, tmp_path, cache_dir, embedder):
    """close() closes the shared connections with the loop they belong to; the next run (on a new
    loop) opens its own instead of reusing a dead loop's."""
    runtime = _runtime(endpoint, tmp_path, cache_dir, embedder)
    try:
        assert "409.5" in runtime.run("What is 17.5% of 2340?").answer
        runtime.close()
        assert "409.5" in runtime.run("What is 17.5% of 2340?").answer
    finally:
        runtime.close()
    assert endpoint.connections == 2
