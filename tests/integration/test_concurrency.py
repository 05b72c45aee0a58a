"""Runs stopped between a step and its checkpoint."""

from __future__ import annotations

import contextlib
import uuid

import pytest

from brainstack import RunError, Runtime, UsageError


def unique(name: str) -> str:
    """Thread ids unique per test run: the PostgreSQL database outlives the test session."""
    return f"{name}-{uuid.uuid4().hex[:12]}"


async def test_a_run_stopped_after_a_step_saved_its_result_is_continued_not_dropped(
    backend_settings, embedder, monkeypatch
):
    """The process stops after review saved its result (the answer) but before the checkpoint after
    it was written. LangGraph's state then lists no next step (review's result is there), yet the
    run is not over: continuing it finishes it without running review again, and a new task is
    refused as for any unfinished run, instead of starting over the saved answer and losing it."""
    import brainstack.graphs.checkpointers as checkpointers
    from brainstack.graphs.stranded import missing_nodes

    real = checkpointers.open_checkpointer

    class Died(Exception):
        """The process ended here."""

    @contextlib.asynccontextmanager
    async def dying_after_review(settings):
        async with real(settings) as saver:
            put = saver.aput

            async def aput(config, checkpoint, metadata, new_versions):
                if "remember" in missing_nodes(checkpoint, ()):  # the checkpoint after review
                    raise Died
                return await put(config, checkpoint, metadata, new_versions)

            saver.aput = aput
            yield saver

    thread = unique("after-review")
    monkeypatch.setattr(checkpointers, "open_checkpointer", dying_after_review)
    with Runtime(backend_settings, embedder=embedder) as first, pytest.raises(RunError):
        await first.arun("What is 17.5% of 2340?", thread_id=thread)
    monkeypatch.setattr(checkpointers, "open_checkpointer", real)

    with Runtime(backend_settings, embedder=embedder) as second:
        assert (await second.ahistory(thread))[0].next == ["review"]
        with pytest.raises(UsageError, match="unfinished run"):
            await second.arun("What is 2 + 2?", thread_id=thread)
        result = await second.arun(thread_id=thread)
        assert result.status == "completed" and "409.5" in result.answer
        assert result.remembered.episode_id
        messages = await second.amessages(thread)
        assert [m["role"] for m in messages] == ["human", "ai"] and "409.5" in messages[1]["content"]
        assert (await second.ahistory(thread))[0].next == []
        assert second.memory is not None and second.memory.episodes.count("default") == 1
