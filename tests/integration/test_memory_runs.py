"""Memory across runs: recall before routing, remember after, in separate processes, and degraded backends."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from brainstack import Runtime

RUN = (
    "import brainstack, json, sys; r = brainstack.run(sys.argv[1], user_id=sys.argv[2]); "
    "print(json.dumps(r.model_dump(mode='json')))"
)
# The same run with the model's side replayed from a cassette (argv[3]): a real decision, which the
# offline model never reaches. It prints the result and what each model request carried.
REPLAYED_RUN = """
import httpx2; httpx2.alias_httpx()
import json, sys
from brainstack import Runtime
from brainstack.config import Settings
from brainstack.testing import replay, replay_settings

with replay(sys.argv[3]) as cassette, Runtime(replay_settings(Settings.from_env().home)) as runtime:
    result = runtime.run(sys.argv[1], user_id=sys.argv[2])
print(json.dumps({**result.model_dump(mode="json"), "played": cassette.played}))
"""
CASSETTES = Path(__file__).parent / "cassettes"
DECISION = CASSETTES / "acquisition.yaml"


def run_in_new_process(task: str, user: str, env: dict[str, str], cassette: Path | None = None) -> dict:
    script, *more = (RUN,) if cassette is None else (REPLAYED_RUN, str(cassette))
    command = [sys.executable, "-c", script, task, user, *more]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_second_process_recalls_episode_reuses_skill_and_applies_preference(env_home, redis_url):
    """Three processes on one home: a decision teaches a skill, the next one recalls and reinforces
    it, and an offline run recalls it too but, deciding nothing, does not count as its success."""
    user = f"ada-{uuid.uuid4().hex[:8]}"
    env = {**env_home, "BRAINSTACK_REDIS_URL": redis_url}

    first = run_in_new_process(
        "Should we acquire our smaller competitor Initech? I prefer short answers.", user, env, DECISION
    )
    assert first["route"]["kind"] == "group_chat" and first["model"] == "openai"
    assert "make an offer for Initech this quarter" in first["answer"]
    assert first["memory"]["episodes"] == []  # nothing to recall yet
    written = first["remembered"]
    assert written["episode_id"] and not written["degraded"]
    assert written["preferences"] == {"stated_preferences": ["short answers"]}
    assert written["skill"] and written["skill_created"] is True
    learned = written["skill"]

    task = "Should we acquire our smaller competitor Initech this year?"
    second = run_in_new_process(task, user, env, DECISION)
    recalled = second["memory"]
    # episodic: the first run is recalled, with its thread
    assert [e["thread_id"] for e in recalled["episodes"]][:1] == [first["thread_id"]]
    assert "acquire our smaller competitor Initech?" in recalled["episodes"][0]["text"]
    # working memory (Redis): the stated preference reached the team
    assert recalled["preferences"]["stated_preferences"] == ["short answers"]
    # procedural: the learned skill is recalled and reinforced, not duplicated
    assert [s["name"] for s in recalled["skills"]] == [learned]
    assert recalled["skills"][0]["source"] == "learned" and recalled["skills"][0]["success_count"] == 1
    assert second["remembered"]["skill"] == learned and second["remembered"]["skill_created"] is False
    # what was recalled is in the CTO's request, the first turn of the chat
    (cto,) = [r for r in second["played"] if "You are the CTO" in (r["system"] or "")]
    sent = json.dumps(cto["messages"])
    assert "short answers" in sent and "make an offer for Initech this quarter" in sent  # (the episode)
    assert learned in sent and "1. CTO: Initech's billing service" in sent
    assert recalled["tokens"] > 0 and set(recalled["timings"]) == {
        "embedding",
        "working",
        "episodic",
        "knowledge",
        "procedural",
    }

    offline = run_in_new_process(task, user, env)
    assert offline["model"] == "offline"
    assert [s["name"] for s in offline["memory"]["skills"]] == [learned]
    assert "Recalled from memory" in offline["answer"] and learned in offline["answer"]
    assert "Answering as you prefer: short answers" in offline["answer"]
    assert offline["remembered"]["skill"] is None and offline["remembered"]["episode_id"]

    brainstack = str(Path(sys.executable).with_name("brainstack"))
    done = subprocess.run([brainstack, "skills", "show", learned], env=env, capture_output=True, text=True)
    assert "source: learned" in done.stdout and first["thread_id"] in done.stdout
    assert "# success count: 2" in done.stdout  # the two decisions; the offline run is not one


def test_specialist_answer_applies_a_stated_preference(settings, embedder):
    runtime = Runtime(settings, embedder=embedder)
    runtime.run("I prefer answers with numbers first. How should we design the database schema?")
    result = runtime.run("How do I reduce API latency in the search service?")
    assert result.memory.preferences["stated_preferences"] == ["answers with numbers first"]
    assert "Answering as you prefer: answers with numbers first" in result.answer


def test_knowledge_base_passages_are_recalled_with_their_source(settings, embedder, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "refunds.md").write_text(
        "# Refund policy\n\nCustomers can get a full refund within 30 days of purchase; "
        "after that, store credit.\n"
    )
    runtime = Runtime(settings, embedder=embedder)
    runtime.memory.knowledge.add(docs)
    result = runtime.run("Can a customer get a refund after two months?")
    assert [p.source for p in result.memory.passages][:1] == [str((docs / "refunds.md").resolve())]
    assert "refunds.md" in result.answer  # the offline model reports the passage it was given


POLICIES = {
    "security.md": "# Security policy\n\nEvery employee uses a hardware security key for single sign-on; "
    "SMS codes are not accepted. Laptops must have full-disk encryption turned on before they join the "
    "corporate network.\n\nProduction database access is granted for 8 hours at a time through the "
    "access broker, and every session is recorded. A lost laptop or key is reported to "
    "security@example.com within one hour.\n",
    "vendors.md": "# Vendor management\n\nA new vendor that will process customer data passes a "
    "security review and signs our data processing agreement before any data is shared. Contracts "
    "above 50,000 euros a year are signed by the CFO; below that, by the budget owner.\n",
}


@pytest.mark.parametrize(
    ("task", "recalled"),
    [
        ("Do we accept text message codes for login?", ["security.md"]),  # QA: scored under 0.4
        ("What is the capital of Australia?", []),
    ],
)
def test_recall_keeps_a_passage_that_answers_with_a_low_score_but_not_an_unrelated_one(
    settings, embedder, tmp_path, task, recalled
):
    from brainstack.memory.gateway import PASSAGE_MIN_SCORE, MemoryGateway

    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in POLICIES.items():
        (docs / name).write_text(text, encoding="utf-8")
    gateway = MemoryGateway(settings, embedder=embedder)
    gateway.knowledge.add(docs)
    assert all(p.score < PASSAGE_MIN_SCORE for p in gateway.knowledge.search(task))
    recall = asyncio.run(gateway.recall("ada", "t-kb", task))
    assert [Path(p.source).name for p in recall.passages] == recalled


def test_memory_backends_down_degrade_the_run_but_keep_answer_and_checkpoint(settings, embedder):
    down = settings.model_copy(
        update={"redis_url": "redis://127.0.0.1:1/0", "chroma_url": "http://127.0.0.1:1"}
    )
    runtime = Runtime(down, embedder=embedder)
    result = runtime.run("What is 17.5% of 2340?", thread_id="degraded")
    assert "409.5" in result.answer
    degraded = " | ".join(result.memory.degraded)
    assert "working:" in degraded and "Redis" in degraded
    assert "episodic:" in degraded and "Chroma" in degraded
    assert result.remembered.episode_id is None
    assert any(d.startswith("episodic:") for d in result.remembered.degraded)
    assert [m["role"] for m in runtime.messages("degraded")] == ["human", "ai"]  # the checkpoint is there


def test_a_chroma_server_that_never_answers_degrades_the_run_instead_of_hanging_it(
    settings, embedder, monkeypatch
):
    """QA: a server that accepted connections and never answered held a run (and `memory show`,
    `kb list`) for over ten minutes: Chroma's client waits without a limit."""
    import socket
    import threading

    from brainstack.memory import episodic

    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(silent.accept()[0]) for _ in range(50)], daemon=True).start()
    monkeypatch.setattr(episodic, "CHROMA_CONNECT_TIMEOUT_S", 0.5)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        runtime = Runtime(settings.model_copy(update={"chroma_url": url}), embedder=embedder)
        result = runtime.run("What is 17.5% of 2340?")
        assert "409.5" in result.answer
        degraded = " | ".join(result.memory.degraded)
        assert f"The Chroma backend at {url} did not answer within 0.5 s" in degraded, degraded
        runtime.close()
    finally:
        silent.close()
        for connection in held:
            connection.close()


def test_memory_can_be_turned_off(settings, embedder):
    runtime = Runtime(settings.model_copy(update={"memory": False}), embedder=embedder)
    result = runtime.run("What is 17.5% of 2340?")
    assert result.memory.empty and result.remembered.episode_id is None
    assert not (settings.home / "chroma").exists()


def test_other_users_episodes_are_never_recalled(settings, embedder):
    runtime = Runtime(settings, embedder=embedder)
    runtime.run("Our secret acquisition target is Globex, codename BLUEBIRD.", user_id="ada")
    result = runtime.run("What is our acquisition target codename BLUEBIRD?", user_id="bob")
    assert all("BLUEBIRD" not in e.text for e in result.memory.episodes)
    assert runtime.run("What was the BLUEBIRD codename about?", user_id="ada").memory.episodes


def test_cli_memory_search_and_forget(env_home):
    brainstack = str(Path(sys.executable).with_name("brainstack"))
    user = f"u{uuid.uuid4().hex[:6]}"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([brainstack, *args], env=env_home, capture_output=True, text=True, timeout=120)

    assert cli("run", "Incident INC-7777: the billing API timed out.", "--user", user).returncode == 0
    found = cli("memory", "search", "INC-7777", "--user", user, "--json")
    episodes = json.loads(found.stdout)
    assert episodes and "INC-7777" in episodes[0]["text"]
    refused = cli("memory", "forget", "--user", user)  # no tty, no --yes
    assert refused.returncode == 2 and "--yes" in refused.stderr
    forgot = cli("memory", "forget", "--user", user, "--yes")
    assert forgot.returncode == 0 and "1 episode(s)" in forgot.stdout
    assert json.loads(cli("memory", "search", "INC-7777", "--user", user, "--json").stdout) == []


def test_forgetting_a_user_and_deleting_a_thread_clear_its_session_facts(env_home, redis_url):
    """Session facts (the last task, masked) are kept per thread in working memory: `memory forget
    --user` left them in Redis until they expired, and so did `threads delete`."""
    import redis

    brainstack = str(Path(sys.executable).with_name("brainstack"))
    env = {**env_home, "BRAINSTACK_REDIS_URL": redis_url}
    user = f"u{uuid.uuid4().hex[:6]}"
    threads = [f"s-{uuid.uuid4().hex[:10]}" for _ in range(3)]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([brainstack, *args], env=env, capture_output=True, text=True, timeout=120)

    for thread in threads:
        assert (
            cli(
                "run", "I prefer short answers. What is 5% of 80?", "--user", user, "--thread", thread
            ).returncode
            == 0
        )
    assert cli("run", "What is 2 + 2?", "--user", "someone-else", "--thread", threads[2]).returncode == 0
    store = redis.Redis.from_url(redis_url)

    def session_keys(thread: str) -> list[bytes]:
        return list(store.scan_iter(f"brainstack:wm:session:{thread}*"))

    assert all(session_keys(t) for t in threads)
    deleted = cli("threads", "delete", "--thread", threads[0], "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert session_keys(threads[0]) == [] and session_keys(threads[1])

    forgot = cli("memory", "forget", "--user", user, "--yes")
    assert forgot.returncode == 0, forgot.stderr
    # their 3 episodes (deleting a thread keeps them), 1 preference key, and 2 session facts in each
    # of the two threads they still have
    assert forgot.stdout == f"Forgot user {user!r}: 3 episode(s), 5 working-memory key(s).\n"
    assert session_keys(threads[1]) == [] and session_keys(threads[2]) == []  # shared threads too


@pytest.mark.parametrize("args", [["skills", "show", "../etc/passwd"], ["kb", "add", "/nonexistent/docs"]])
def test_cli_memory_errors_are_one_line(env_home, args):
    brainstack = str(Path(sys.executable).with_name("brainstack"))
    done = subprocess.run([brainstack, *args], env=env_home, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_without_memory_runs_on_a_thread_start_clean_and_can_pause(settings, embedder):
    """Memory off: route is the first node, so it starts each run (resets the last one's values)."""
    off = settings.model_copy(update={"memory": False, "approval": True})
    with Runtime(off, embedder=embedder) as runtime:
        first = runtime.run("What is 17.5% of 2340?", thread_id="off")
        second = runtime.run("What is 2 + 2?", thread_id="off")
        assert len(first.tool_calls) == len(second.tool_calls) == 1
        assert second.speakers == [second.route.target] and set(second.timings) >= {"route", "review"}
        assert "recall" not in second.timings
        assert [m["role"] for m in runtime.messages("off")] == ["human", "ai", "human", "ai"]
        paused = runtime.run("Should we launch a freemium tier?", thread_id="off")
        assert paused.status == "awaiting_approval"
        done = runtime.run(thread_id="off", resume="approve")
        assert done.status == "completed" and done.remembered.episode_id is None
        assert len(runtime.messages("off")) == 6


PII = "ada.lovelace@example.com, phone +44 20 7946 0958, card 4111 1111 1111 1111"
RAW_PII = ("ada.lovelace", "lovelace@example.com", "7946 0958", "4111 1111", "ada-love")


def test_personal_data_is_masked_in_every_layer_memory_writes(settings, embedder):
    """Skills (name, description, examples, steps, provenance), session facts and preferences are
    masked like episodes, even where the team's turns repeat the data; another user's run recalls
    the learned skill without it."""
    from brainstack.testing import replay, replay_settings

    runtime = Runtime(replay_settings(settings.home, cache_dir=settings.cache_dir), embedder=embedder)
    task = f"Should we launch a premium support tier for {PII}? I prefer a call on +44 20 7946 0958."
    with replay(CASSETTES / "premium_support.yaml"):
        first = runtime.run(task, user_id="piiuser", agent="group_chat", thread_id="pii")
    assert "ada.lovelace@example.com" in first.transcript[0].content  # the team repeated it
    written = first.remembered
    assert written.skill and written.skill_created and not written.degraded
    assert written.session["last_task"].startswith(
        "Should we launch a premium support tier for [email], phone [phone], card [card]?"
    )
    assert written.preferences == {"stated_preferences": ["a call on [phone]"]}

    stored = [runtime.memory.working.items("session", "pii"), runtime.memory.working.items("user", "piiuser")]
    skill_files = list(settings.skills_path.glob("*.yaml"))
    assert [p.stem for p in skill_files] == [written.skill]
    for text in [json.dumps(stored), *(p.read_text() for p in skill_files), written.skill]:
        for raw in RAW_PII:
            assert raw not in text
    assert "CTO: For [email] we can staff a named engineer" in skill_files[0].read_text()  # the step is kept

    other_task = "Should we launch a premium support tier for enterprise?"
    other = Runtime(settings, embedder=embedder).run(other_task, user_id="otheruser")  # offline, same home
    recalled = " ".join(s.instructions for s in other.memory.skills) + other.answer
    assert written.skill in [s.name for s in other.memory.skills]
    for raw in RAW_PII:
        assert raw not in recalled


def test_a_preference_with_an_e_mail_address_is_stored_whole_and_masked(settings, embedder):
    runtime = Runtime(settings, embedder=embedder)
    result = runtime.run("I prefer answers sent to ada.lovelace@example.com. What is 2 + 2?", user_id="ada")
    assert result.remembered.preferences == {"stated_preferences": ["answers sent to [email]"]}
    assert runtime.memory.working.items("user", "ada") == {"stated_preferences": ["answers sent to [email]"]}


def _group_chat_state(task: str, answer: str, review: dict) -> dict:
    """The state remember sees after a three-turn group chat of ada's on ``task``."""
    turns = [{"speaker": s, "content": f"{s} weighs the move. More later."} for s in ("CTO", "CMO", "CFO")]
    return {
        "user_id": "ada",
        "task": task,
        "route": {"target": "group_chat", "kind": "group_chat"},
        "answer": answer,
        "speakers": ["CTO", "CMO", "CFO"],
        "transcript": turns,
        "review": review,
    }


@pytest.mark.parametrize(("agreed", "outcome"), [(True, "ok"), (False, "no_agreement")])
def test_only_an_agreed_group_chat_learns_a_skill(settings, embedder, agreed, outcome):
    from brainstack.memory.gateway import MemoryGateway

    gateway = MemoryGateway(settings, embedder=embedder)
    task = "Should we move the data team from Lisbon to Porto next spring?"
    review = {"status": "ok", "stop_reason": "Maximum number of messages 4 reached", "agreed": agreed}
    written = asyncio.run(gateway.remember(_group_chat_state(task, "CFO: we are split.", review), "t-move"))
    assert written.episode_id and not written.degraded
    assert (written.skill is not None) is agreed
    assert gateway.episodes.search("ada", task, k=1)[0].metadata["outcome"] == outcome


def test_a_learned_skill_keeps_no_preference_its_user_stated(settings, embedder):
    """Learned skills are shared by every user: one user's "I prefer ..." stays in their working
    memory and out of the skill's name, description, example and provenance."""
    from brainstack.memory.gateway import MemoryGateway

    gateway = MemoryGateway(settings, embedder=embedder)
    task = "Should we move the data team from Lisbon to Porto next spring? I prefer short answers."
    state = _group_chat_state(task, "CFO: we move in spring. DECIDED", {"status": "ok", "agreed": True})
    written = asyncio.run(gateway.remember(state, "t-move"))
    assert written.preferences == {"stated_preferences": ["short answers"]}  # the user's, kept
    assert written.skill and written.skill_created
    skill = gateway.skills.get(written.skill)
    stored = skill.model_dump_json()
    assert "prefer" not in stored and "short answers" not in stored, stored
    assert skill.when_to_use == ["Should we move the data team from Lisbon to Porto next spring?"]
    assert skill.name == "group-chat-should-we-move-the-data-team-from-lisbon-to-porto-ne"  # 63 chars


def test_cli_kb_add_names_the_empty_files_it_skipped(env_home, tmp_path):
    brainstack = str(Path(sys.executable).with_name("brainstack"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "empty.md").write_text("  \n", encoding="utf-8")
    (docs / "refunds.md").write_text("Refunds within 30 days of purchase.\n", encoding="utf-8")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([brainstack, *args], env=env_home, capture_output=True, text=True, timeout=120)

    added = cli("kb", "add", str(docs))
    assert added.returncode == 0
    assert f"skipped   {(docs / 'empty.md').resolve()}: empty file, nothing to index" in added.stderr
    assert "1 added" in added.stdout and "1 skipped" in added.stdout and "(1 chunk in all)" in added.stdout
    passages = cli("kb", "search", "refund", "-k", "5").stdout
    assert "refunds.md" in passages and "empty.md" not in passages


def test_cli_forget_with_a_layer_down_reports_what_it_deleted_and_what_failed(env_home):
    brainstack = str(Path(sys.executable).with_name("brainstack"))
    user = f"u{uuid.uuid4().hex[:6]}"
    redis_down = {**env_home, "BRAINSTACK_REDIS_URL": "redis://127.0.0.1:1/0"}

    def cli(*args: str, env: dict[str, str] = env_home) -> subprocess.CompletedProcess[str]:
        return subprocess.run([brainstack, *args], env=env, capture_output=True, text=True, timeout=120)

    assert cli("run", "Incident INC-4242: the billing API timed out.", "--user", user).returncode == 0
    forgot = cli("memory", "forget", "--user", user, "--yes", env=redis_down)
    assert forgot.returncode == 1
    assert forgot.stdout == f"Forgot user {user!r}: 1 episode(s).\n"  # the episodes are gone: said so
    failed = forgot.stderr.strip().splitlines()
    assert failed[0].startswith("brainstack: working memory not deleted: The Redis backend failed")
    assert (
        failed[1] == f"brainstack: once it is back, run `brainstack memory forget --user {user} --yes` again."
    )
    assert json.loads(cli("memory", "search", "INC-4242", "--user", user, "--json").stdout) == []

    chroma_down = {**env_home, "BRAINSTACK_CHROMA_URL": "http://127.0.0.1:1"}
    forgot = cli("memory", "forget", "--user", user, "--yes", env=chroma_down)
    assert forgot.returncode == 1
    assert forgot.stdout == f"Forgot user {user!r}: 0 working-memory key(s).\n"
    assert forgot.stderr.startswith("brainstack: episodic memory not deleted: The Chroma backend")


class CountingEmbedder:
    """The session's MiniLM, noting each text it embeds and on which thread."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.calls: list[tuple[str, str]] = []

    def embed(self, texts):
        import threading

        self.calls += [(text, threading.current_thread().name) for text in texts]
        return self.inner.embed(texts)

    def embed_one(self, text):
        return self.embed([text])[0]

    embed_query = embed_one


def test_a_run_embeds_its_episode_once_ahead_of_remember_and_stores_that_vector(settings, embedder):
    import numpy as np

    from brainstack.memory.episodic import episode_document

    counting = CountingEmbedder(embedder)
    runtime = Runtime(settings, embedder=counting)
    result = runtime.run("How should we price the launch? Mail ada@example.com the plan.", user_id="ada")
    assert result.remembered.episode_id and not result.remembered.degraded

    episodes = runtime.memory.episodes
    stored = episodes._collection("ada", create=False).get(
        ids=[result.remembered.episode_id], include=["documents", "embeddings"]
    )
    [document] = stored["documents"]
    assert document == episode_document(document) and "ada@example.com" not in document
    threads = [thread for text, thread in counting.calls if text == document]
    assert len(threads) == 1 and threads[0].startswith("brainstack-memory")  # once, ahead
    np.testing.assert_array_equal(stored["embeddings"][0], embedder.embed([document])[0])
    assert not runtime.memory._ahead
    runtime.close()


def test_an_answer_a_human_approves_is_embedded_by_remember_not_ahead(settings, embedder):
    from brainstack.memory.episodic import episode_document

    counting = CountingEmbedder(embedder)
    runtime = Runtime(settings.model_copy(update={"approval": True}), embedder=counting)
    paused = runtime.run("Should we launch a freemium tier next quarter?", thread_id="approve-me")
    assert paused.status == "awaiting_approval" and not runtime.memory._ahead
    assert not [text for text, _ in counting.calls if "\n→ " in text]  # no episode embedded yet
    result = runtime.run(thread_id="approve-me", resume={"edit": "Launch it in May."})
    assert result.answer == "Launch it in May." and result.remembered.episode_id

    stored = runtime.memory.episodes._collection("default", create=False).get(
        ids=[result.remembered.episode_id], include=["documents"]
    )
    [document] = stored["documents"]
    assert document == episode_document(document) and document.endswith("Launch it in May.")
    threads = [thread for text, thread in counting.calls if text == document]
    assert len(threads) == 1 and not threads[0].startswith("brainstack-memory")  # in remember
    assert [text for text, _ in counting.calls if "\n→ " in text] == [document]  # only the edited one
    runtime.close()


def test_an_agreed_offline_group_chat_teaches_no_skill(settings, embedder):
    """The offline model's turns only echo the task: there is no procedure to share with every user.
    The run is still remembered as the user's episode."""
    from brainstack.memory.gateway import MemoryGateway

    gateway = MemoryGateway(settings, embedder=embedder)
    task = "Should we open an office in Porto next spring?"
    review = {"status": "ok", "stop_reason": "Text 'TERMINATE' mentioned", "agreed": True}
    state = {**_group_chat_state(task, "CFO: open it in March.", review), "model": "offline"}
    written = asyncio.run(gateway.remember(state, "t-offline"))
    assert written.episode_id and not written.degraded and written.skill is None
    assert gateway.skills.stats() == {} and list(gateway.skills.user_dir.glob("*.yaml")) == []
    learned = asyncio.run(gateway.remember({**state, "model": "openai"}, "t-real"))  # the same run, decided
    assert learned.skill is not None and learned.skill_created
