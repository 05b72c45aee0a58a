"""`brainstack doctor` / `brainstack.doctor.check`: every part opened for real, each reported on its
own, a part that is down never hiding the others."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from pydantic import SecretStr

from brainstack.doctor import check

BRAINSTACK = str(Path(sys.executable).with_name("brainstack"))
PARTS = [
    "model",
    "embeddings",
    "checkpoints",
    "working memory",
    "episodic memory",
    "knowledge base",
    "skills",
]


def by_part(settings) -> dict[str, tuple[bool, str]]:
    return {c.part: (c.ok, c.detail) for c in check(settings)}


def test_the_default_setup_answers_everywhere(settings):
    checks = check(settings)
    assert [c.part for c in checks] == PARTS
    assert all(c.ok for c in checks), checks
    found = {c.part: c.detail for c in checks}
    assert found["model"].startswith("offline model")
    assert found["embeddings"] == "all-MiniLM-L6-v2, 384 dimensions"
    assert found["checkpoints"] == f"SQLite {settings.home / 'checkpoints.sqlite'} (synchronous=full)"
    assert found["working memory"].startswith("in-process")
    assert found["skills"].startswith("3 built-in, 0 in ")


def test_the_real_servers_answer(settings, postgres_url, redis_url, chroma_url):
    found = by_part(
        settings.model_copy(
            update={"checkpoint_url": postgres_url, "redis_url": redis_url, "chroma_url": chroma_url}
        )
    )
    assert all(ok for ok, _ in found.values()), found
    server = urlparse(postgres_url)  # (BRAINSTACK_TEST_POSTGRES_URL may name another database)
    assert found["checkpoints"][1] == f"PostgreSQL at {server.hostname}:{server.port}{server.path}"
    assert found["working memory"][1] == f"Redis at {redis_url}, TTL 3600 s"
    assert found["episodic memory"][1] == f"Chroma server at {chroma_url}"


def test_each_part_that_is_down_is_named_and_the_others_still_checked(settings, port_factory):
    closed = port_factory()
    found = by_part(
        settings.model_copy(
            update={
                "checkpoint_url": f"postgresql://postgres@127.0.0.1:{closed}/test",
                "redis_url": f"redis://127.0.0.1:{closed}/0",
                "chroma_url": f"http://127.0.0.1:{closed}",
            }
        )
    )
    assert [part for part, (ok, _) in found.items() if not ok] == [
        "checkpoints",
        "working memory",
        "episodic memory",
        "knowledge base",
    ]
    assert "BRAINSTACK_CHECKPOINT_URL" in found["checkpoints"][1]
    assert "BRAINSTACK_REDIS_URL" in found["working memory"][1]
    assert "BRAINSTACK_CHROMA_URL" in found["episodic memory"][1]
    assert found["model"][0] and found["embeddings"][0] and found["skills"][0]


def test_a_skills_folder_that_cannot_be_written_is_named(settings, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    found = by_part(settings.model_copy(update={"skills_dir": blocker / "skills"}))
    ok, detail = found["skills"]
    assert not ok and f"Cannot write learned skills to {blocker / 'skills'}: Not a directory" in detail
    assert "BRAINSTACK_SKILLS_DIR" in detail
    assert [part for part, (ok, _) in found.items() if not ok] == ["skills"]


def test_an_unusable_skill_file_is_named_with_the_fix(settings):
    settings.skills_path.mkdir(parents=True, exist_ok=True)
    broken = settings.skills_path / "offsite-planning.yaml"
    broken.write_text("name: offsite-planning\nsteps: [unclosed\n")
    ok, detail = by_part(settings)["skills"]
    assert not ok and str(broken) in detail and "cannot be read" in detail
    assert detail.startswith("1 skill file(s) cannot be used and runs skip them")
    assert "brainstack skills forget NAME" in detail


def test_with_memory_off_only_what_a_run_uses_is_checked(settings):
    checks = check(settings.model_copy(update={"memory": False}))
    assert [c.part for c in checks] == ["model", "embeddings", "checkpoints", "memory"]
    assert all(c.ok for c in checks) and checks[-1].detail.startswith("off")


def test_the_offline_model_asked_for_with_a_key_set_is_not_blamed_on_a_missing_key(settings):
    # BRAINSTACK_PROVIDER=offline wins over a key; the line said "no OPENAI_API_KEY ... set" (QA)
    chosen = settings.model_copy(
        update={"provider": "offline", "openai_api_key": SecretStr("sk-test"), "memory": False}
    )
    ok, detail = by_part(chosen)["model"]
    assert ok and detail.startswith("offline model (BRAINSTACK_PROVIDER=offline)"), detail


@pytest.fixture
def endpoint(port_factory) -> Iterator[tuple[str, list[dict]]]:
    """A local OpenAI-compatible server that only lists models (what doctor asks; no chat call),
    and the requests it saw."""
    seen: list[dict] = []

    class Models(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append({"path": self.path, "authorization": self.headers.get("Authorization")})
            refused = self.headers.get("Authorization") == "Bearer wrong"
            body = {"error": "bad key"} if refused else {"data": [{"id": "gpt-4o-mini"}, {"id": "other"}]}
            payload = json.dumps(body).encode()
            self.send_response(401 if refused else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port_factory()), Models)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


def test_the_model_endpoint_is_asked_for_its_models_with_the_key(settings, endpoint):
    url, seen = endpoint
    openai = settings.model_copy(
        update={"provider": "openai", "openai_base_url": url, "openai_api_key": SecretStr("sk-test")}
    )
    ok, detail = by_part(openai)["model"]
    assert ok and detail == f"{url} answers (2 model(s) listed); model gpt-4o-mini"
    assert seen == [{"path": "/v1/models", "authorization": "Bearer sk-test"}]

    ok, detail = by_part(openai.model_copy(update={"model": "gpt-9"}))["model"]
    assert ok and "'gpt-9' is not among its models" in detail

    ok, detail = by_part(openai.model_copy(update={"openai_api_key": SecretStr("wrong")}))["model"]
    assert not ok and "refuses the key (HTTP 401): check OPENAI_API_KEY" in detail


def test_an_unreachable_model_endpoint_is_named(settings, port_factory):
    url = f"http://127.0.0.1:{port_factory()}/v1"
    ok, detail = by_part(settings.model_copy(update={"provider": "openai", "openai_base_url": url}))["model"]
    assert not ok and f"The model endpoint {url} cannot be reached" in detail and "OPENAI_BASE_URL" in detail


def test_the_command_prints_one_line_per_part_and_exits_1_when_one_is_down(env_home, port_factory):
    done = subprocess.run([BRAINSTACK, "doctor"], env=env_home, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [line[6:21].strip() for line in done.stdout.splitlines()] == PARTS
    assert all(line.startswith("ok ") for line in done.stdout.splitlines())

    down = {**env_home, "BRAINSTACK_REDIS_URL": f"redis://127.0.0.1:{port_factory()}/0"}
    done = subprocess.run(
        [BRAINSTACK, "doctor", "--json"], env=down, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    checks = json.loads(done.stdout)
    assert [c["part"] for c in checks if not c["ok"]] == ["working memory"]
