"""The ``knowledge_search`` tool: the knowledge base's passages, with their source, for an agent."""

from __future__ import annotations

import asyncio
import logging

import pytest

from brainstack.memory.gateway import MemoryGateway
from brainstack.memory.skills import ToolStep
from brainstack.tools import get_tools

REVENUE = (
    "# Revenue recognition\n\nAnnual plans are paid up front and recognised monthly over the twelve "
    "months of the contract; the unearned part sits in deferred revenue.\n"
)
TRAVEL = "# Travel\n\nTrains are preferred for trips under four hours; flights are booked in economy.\n"


@pytest.fixture
def gateway(settings, embedder) -> MemoryGateway:
    return MemoryGateway(settings, embedder=embedder)


def search(gateway: MemoryGateway, query: str) -> str:
    (tool,) = get_tools(["knowledge_search"], memory=gateway)
    return str(asyncio.run(tool.ainvoke({"query": query})))


def test_it_returns_the_relevant_passages_with_their_source(gateway, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "revenue.md").write_text(REVENUE, encoding="utf-8")
    (docs / "travel.md").write_text(TRAVEL, encoding="utf-8")
    gateway.knowledge.add(docs)
    found = search(gateway, "how are annual plans recognised as revenue")
    first, text = found.split("\n", 1)
    assert first.startswith("[1] revenue.md (chunk 0, similarity 0.")  # (its folders stay private)
    assert "recognised monthly over the twelve months" in text
    assert "travel.md" not in found  # not relevant to the query: left out


def test_it_says_when_the_knowledge_base_is_empty_or_holds_nothing_relevant(gateway, tmp_path):
    assert search(gateway, "deferred revenue") == "The knowledge base is empty."
    (tmp_path / "travel.md").write_text(TRAVEL, encoding="utf-8")
    gateway.knowledge.add(tmp_path / "travel.md")
    assert search(gateway, "quantum chromodynamics lattice") == (
        "No passage in the knowledge base is relevant to that query."
    )
    assert search(gateway, "   ").startswith("error: the query is empty")


DIRECTORY = """# Staff directory

Internal extensions are dialled from any office phone; from outside, prefix +33 4 72 00.

| Name | Team | Role | Extension | Office |
|---|---|---|---|---|
| Ingrid Vasquez | Payments | Engineering manager | 4417 | Lyon |
| Tomasz Wierzbicki | Payments | Backend engineer | 4452 | Lyon |
| Amara Nwosu | Inventory | Product manager | 4309 | Lille |
| Lucien Marchetti | Stores | Regional manager, south | 4120 | Marseille |
| Sofia Lindqvist | Security | Security lead | 4501 | Lyon |
"""
ERROR_CODES = """# Checkout error codes

| Code | Meaning | What to do |
|---|---|---|
| PAY-4001 | Card number invalid | Ask the customer to enter the card again |
| PAY-4002 | Card expired | Ask for another card |
| PAY-4031 | Card declined by the issuer | Do not retry; the customer calls their bank |
| PAY-5002 | Payment provider timeout | Retried three times; page payments on-call after 10 minutes |
"""


@pytest.fixture
def tables(gateway, tmp_path):
    docs = tmp_path / "tables"
    docs.mkdir()
    (docs / "directory.md").write_text(DIRECTORY, encoding="utf-8")
    (docs / "error-codes.md").write_text(ERROR_CODES, encoding="utf-8")
    (docs / "travel.md").write_text(TRAVEL, encoding="utf-8")
    gateway.knowledge.add(docs)
    return gateway


def test_a_passage_naming_what_the_query_names_is_returned_though_its_similarity_is_low(tables):
    """MiniLM scores "Which team is Amara Nwosu in?" under 0.25 against the table that answers
    it, which the hybrid search ranks first by keyword: recall by cosine alone dropped it."""
    (found,) = tables.knowledge.search("Which team is Amara Nwosu in?", k=1)
    assert found.source.endswith("directory.md") and found.score < 0.25  # (what makes the case)
    answer = search(tables, "Which team is Amara Nwosu in?")
    assert "| Amara Nwosu | Inventory |" in answer and "travel.md" not in answer


def test_a_name_no_document_holds_gets_no_passage(tables):
    """The directory is the best keyword match of a question about someone it does not list (it
    holds "extension"), but not by enough of the question to be recalled for it."""
    from brainstack.memory.gateway import PASSAGE_MIN_COVERAGE

    query = "What is Dmitri Okafor's extension?"
    named = max(tables.knowledge.search(query, k=4), key=lambda p: p.keyword or 0.0)
    assert named.source.endswith("directory.md") and named.coverage < PASSAGE_MIN_COVERAGE
    assert search(tables, query) == "No passage in the knowledge base is relevant to that query."


def test_an_agent_has_it_only_with_memory_on(gateway):
    assert [tool.name for tool in get_tools(["calculator", "knowledge_search"])] == ["calculator"]
    named = [tool.name for tool in get_tools(["calculator", "knowledge_search"], memory=gateway)]
    assert named == ["calculator", "knowledge_search"]


def test_a_skill_may_not_call_it():
    """Skills run their tool steps without a runtime's memory."""
    with pytest.raises(
        ValueError, match=r"'knowledge_search' needs a runtime's memory, .*skills may call: \['calculator'\]"
    ):
        ToolStep(kind="tool", tool="knowledge_search", arguments={"query": "refunds"})


def test_a_backend_that_is_down_is_the_models_to_handle(settings, embedder, tmp_path, caplog):
    """The tool fails with a clear BackendError; the specialist tells the model what failed."""
    from brainstack.errors import BackendError

    down = MemoryGateway(settings.model_copy(update={"chroma_url": "http://127.0.0.1:1"}), embedder=embedder)
    (tool,) = get_tools(["knowledge_search"], memory=down)
    with pytest.raises(BackendError):
        asyncio.run(tool.ainvoke({"query": "refunds"}))
    from types import SimpleNamespace

    from brainstack.agents.specialist import Specialist

    agent = SimpleNamespace(name="finance", tools={"knowledge_search": tool})
    with caplog.at_level(logging.WARNING, logger="brainstack"):
        told = asyncio.run(Specialist._call_tool(agent, "knowledge_search", {"query": "refunds"}))  # type: ignore[arg-type]
    assert told.startswith("error: BackendError: a service this tool needs is unavailable")
    # (the operator's remedy, with the server's address, goes to the log, not to the model: QA
    # saw a model repeat "Start it (`chroma run --path DIR …`)" to the user)
    assert "127.0.0.1" not in told and "chroma run" not in told
    assert "finance's tool knowledge_search failed: " in caplog.text and "127.0.0.1:1" in caplog.text


def test_the_default_agents_offer_it():
    from brainstack.config.agents import load_agents

    assert all("knowledge_search" in spec.tools for spec in load_agents(None).agents.values())


def test_the_knowledge_base_is_opened_and_searched_off_the_event_loop():
    """Opening the knowledge base (the Chroma client, the collection: network calls on a
    server) ran on the event loop when recall had not opened it, holding up every other run."""
    import threading
    from types import SimpleNamespace

    opened_on: list[threading.Thread] = []

    class Gateway:
        @property
        def knowledge(self):
            opened_on.append(threading.current_thread())
            return SimpleNamespace(search=lambda query, k: [], count=lambda: 0)

    (tool,) = get_tools(["knowledge_search"], memory=Gateway())  # type: ignore[arg-type]
    assert asyncio.run(tool.ainvoke({"query": "refunds"})) == "The knowledge base is empty."
    assert opened_on and threading.main_thread() not in opened_on
