"""Build an ONNX sentence-embedding graph for a BERT encoder from safetensors weights.

The graph takes ``input_ids`` and ``attention_mask`` (int64, batch × tokens) and
returns ``sentence_embedding`` (float32, batch × hidden): the BERT encoder, mean
pooling over the attention mask and L2 normalisation, as sentence-transformers
computes for all-MiniLM-L6-v2. Built once with :mod:`onnx.helper`; no torch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BUILDER_VERSION", "UNFUSED", "build_sentence_encoder"]

BUILDER_VERSION = "3"
"""Bump when the graph changes: cached exports carry it in their file name."""

UNFUSED = ("SkipLayerNormFusion",)
"""onnxruntime graph optimizers a session of this graph must disable (see build_sentence_encoder):
the session option ``optimization.disable_specified_optimizers``, joined with ``;``."""

OPSET = 17  # LayerNormalization is in the default domain from 17 on.
CONTRIB = "com.microsoft"  # onnxruntime's fused transformer kernels (in every onnxruntime build)


def build_sentence_encoder(model_dir: Path, *, fused: bool = True) -> Any:
    """Return an ``onnx.ModelProto`` for the BERT model in ``model_dir``.

    ``fused`` builds each encoder layer from onnxruntime's fused kernels (``Attention``,
    ``BiasGelu``) and ``LayerNormalization``: 11 operators per layer instead of 30, the same
    arithmetic in float32. onnxruntime's own optimizer does not recognise this hand-built graph's
    patterns, so it would otherwise run every small operator; for one short query that dispatch
    cost dominates. ``fused=False`` builds the plain ONNX graph (portable to other runtimes).

    The residual adds stay separate from the layer norms on purpose: for one short text,
    onnxruntime's CPU ``SkipLayerNormalization`` kernel is slower than ``Add`` + ``Add`` +
    ``LayerNormalization`` (onnxruntime 1.32: 1.3x on two threads, 2.3x on one, session overhead
    included; its 12 nodes were 16 % of an int8 query embedding's kernel time). A session must
    therefore disable the ``UNFUSED`` optimizers so that onnxruntime does not fuse them back (see
    ``MiniLMEmbedder``).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    weights = load_file(str(model_dir / "model.safetensors"))
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = hidden // heads
    eps = float(config.get("layer_norm_eps", 1e-12))
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"unsupported activation {config.get('hidden_act')!r}")

    nodes: list[Any] = []
    inits: list[Any] = []

    def init(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], name: str, domain: str = "", **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, domain=domain or None, **attrs))
        return name

    def w(key: str) -> np.ndarray:
        return weights[key].astype(np.float32)

    def dense(x: str, prefix: str, out: str) -> str:
        weight = init(f"{prefix}.weight_t", w(f"{prefix}.weight").T)
        bias = init(f"{prefix}.bias", w(f"{prefix}.bias"))
        return node("Add", [node("MatMul", [x, weight], f"{out}_mm"), bias], out)

    def layer_norm(x: str, prefix: str, out: str) -> str:
        scale = init(f"{prefix}.weight", w(f"{prefix}.weight"))
        bias = init(f"{prefix}.bias", w(f"{prefix}.bias"))
        return node("LayerNormalization", [x, scale, bias], out, axis=-1, epsilon=eps)

    # Constants.
    init("c_zero_1d", np.array([0], dtype=np.int64))
    init("c_one_f", np.array(1.0, dtype=np.float32))
    init("c_neg_f", np.array(-1e4, dtype=np.float32))
    init("c_scale", np.array(1.0 / math.sqrt(head_dim), dtype=np.float32))
    init("c_half", np.array(0.5, dtype=np.float32))
    init("c_rsqrt2", np.array(1.0 / math.sqrt(2.0), dtype=np.float32))
    init("c_eps_pool", np.array(1e-9, dtype=np.float32))
    init("c_eps_norm", np.array(1e-12, dtype=np.float32))
    init("c_split_shape", np.array([0, 0, heads, head_dim], dtype=np.int64))
    init("c_merge_shape", np.array([0, 0, hidden], dtype=np.int64))
    init("c_axes_12", np.array([1, 2], dtype=np.int64))
    init("c_axes_2", np.array([2], dtype=np.int64))
    init("c_axes_1", np.array([1], dtype=np.int64))

    # Embeddings: word + position + token type 0 (single-segment input), then LayerNorm.
    word = init("emb.word", w("embeddings.word_embeddings.weight"))
    position = init("emb.position", w("embeddings.position_embeddings.weight"))
    token_type = init("emb.token_type0", w("embeddings.token_type_embeddings.weight")[0])
    length = node("Shape", ["input_ids"], "len", start=1, end=2)  # 1-D [tokens]
    positions = node("Slice", [position, "c_zero_1d", length, "c_zero_1d"], "emb_pos")
    x = node("Add", [node("Gather", [word, "input_ids"], "emb_word"), positions], "emb_sum")
    x = node("Add", [x, token_type], "emb_sum_tt")
    x = layer_norm(x, "embeddings.LayerNorm", "emb_out")

    # Additive attention mask, batch × 1 × 1 × tokens: 0 where attended, -1e4 on padding.
    mask_f = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    inverted = node("Sub", ["c_one_f", mask_f], "mask_inv")
    mask_bias = node("Unsqueeze", [node("Mul", [inverted, "c_neg_f"], "mask_neg"), "c_axes_12"], "mask_bias")

    if fused:
        mask_i32 = node("Cast", ["attention_mask"], "mask_i32", to=TensorProto.INT32)
    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}"
        if fused:
            x = _fused_layer(node, init, w, x, mask_i32, p, i, heads, eps)
            continue
        # One MatMul for Q, K and V together.
        qkv_w = np.concatenate(
            [w(f"{p}.attention.self.{part}.weight").T for part in ("query", "key", "value")], axis=1
        )
        qkv_b = np.concatenate([w(f"{p}.attention.self.{part}.bias") for part in ("query", "key", "value")])
        qkv = node(
            "Add",
            [node("MatMul", [x, init(f"{p}.qkv_w", qkv_w)], f"l{i}_qkv_mm"), init(f"{p}.qkv_b", qkv_b)],
            f"l{i}_qkv",
        )
        sizes = init(f"{p}.qkv_sizes", np.array([hidden] * 3, dtype=np.int64))
        nodes.append(
            helper.make_node(
                "Split", [qkv, sizes], [f"l{i}_q", f"l{i}_k", f"l{i}_v"], name=f"l{i}_split", axis=-1
            )
        )

        def heads_of(t: str, perm: list[int], i: int = i) -> str:
            split = node("Reshape", [t, "c_split_shape"], f"{t}_heads")
            return node("Transpose", [split], f"{t}_t", perm=perm)

        q = heads_of(f"l{i}_q", [0, 2, 1, 3])  # b, h, t, d
        k = heads_of(f"l{i}_k", [0, 2, 3, 1])  # b, h, d, t
        v = heads_of(f"l{i}_v", [0, 2, 1, 3])  # b, h, t, d
        scores = node("Mul", [node("MatMul", [q, k], f"l{i}_qk"), "c_scale"], f"l{i}_scores")
        probs = node("Softmax", [node("Add", [scores, mask_bias], f"l{i}_masked")], f"l{i}_probs", axis=-1)
        context = node(
            "Transpose", [node("MatMul", [probs, v], f"l{i}_ctx")], f"l{i}_ctx_t", perm=[0, 2, 1, 3]
        )
        context = node("Reshape", [context, "c_merge_shape"], f"l{i}_ctx_merged")
        attn = dense(context, f"{p}.attention.output.dense", f"l{i}_attn_out")
        x = layer_norm(
            node("Add", [attn, x], f"l{i}_attn_res"), f"{p}.attention.output.LayerNorm", f"l{i}_ln1"
        )
        # Feed-forward with exact (erf) GELU.
        h = dense(x, f"{p}.intermediate.dense", f"l{i}_ff1")
        erf = node("Erf", [node("Mul", [h, "c_rsqrt2"], f"l{i}_ff_scaled")], f"l{i}_ff_erf")
        gate = node("Mul", [node("Add", [erf, "c_one_f"], f"l{i}_ff_erf1"), "c_half"], f"l{i}_ff_gate")
        h = node("Mul", [h, gate], f"l{i}_gelu")
        h = dense(h, f"{p}.output.dense", f"l{i}_ff2")
        x = layer_norm(node("Add", [h, x], f"l{i}_ff_res"), f"{p}.output.LayerNorm", f"l{i}_ln2")

    # Mean pooling over attended tokens, then L2 normalisation.
    mask3 = node("Unsqueeze", [mask_f, "c_axes_2"], "mask3")
    summed = node(
        "ReduceSum", [node("Mul", [x, mask3], "masked_tokens"), "c_axes_1"], "token_sum", keepdims=0
    )
    counts = node(
        "Max",
        [node("ReduceSum", [mask3, "c_axes_1"], "token_count", keepdims=0), "c_eps_pool"],
        "token_count_safe",
    )
    pooled = node("Div", [summed, counts], "pooled")
    norm = node("Max", [node("ReduceL2", [pooled], "l2", axes=[1], keepdims=1), "c_eps_norm"], "l2_safe")
    node("Div", [pooled, norm], "sentence_embedding")

    graph = helper.make_graph(
        nodes,
        "sentence_encoder",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        outputs=[helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializer=inits,
    )
    opsets = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid(CONTRIB, 1)] if fused else [])
    model = helper.make_model(graph, opset_imports=opsets, producer_name="brainstack")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _fused_layer(
    node: Any, init: Any, w: Any, x: str, mask: str, p: str, i: int, heads: int, eps: float
) -> str:
    """One encoder layer from onnxruntime's fused kernels (see :func:`build_sentence_encoder`)."""
    qkv_w = np.concatenate(
        [w(f"{p}.attention.self.{part}.weight").T for part in ("query", "key", "value")], axis=1
    )
    qkv_b = np.concatenate([w(f"{p}.attention.self.{part}.bias") for part in ("query", "key", "value")])
    # Attention: Q/K/V projection, scaled dot product over the heads with the 0/1 padding mask,
    # softmax and the weighted sum, merged back to batch × tokens × hidden.
    context = node(
        "Attention",
        [x, init(f"{p}.qkv_w", qkv_w), init(f"{p}.qkv_b", qkv_b), mask],
        f"l{i}_attention",
        domain=CONTRIB,
        num_heads=heads,
    )

    def dense_add_norm(
        inner: str, residual: str, dense: str, ln: str, w_name: str, ln_name: str, out: str
    ) -> str:
        """LayerNorm(inner @ W + b + residual), left unfused (see build_sentence_encoder)."""
        projected = node("MatMul", [inner, init(f"{p}.{w_name}_w", w(f"{p}.{dense}.weight").T)], out)
        biased = node("Add", [projected, init(f"{p}.{w_name}_b", w(f"{p}.{dense}.bias"))], f"{out}_b")
        summed = node("Add", [biased, residual], f"{out}_res")
        gamma = init(f"{p}.{ln_name}_g", w(f"{p}.{ln}.weight"))
        beta = init(f"{p}.{ln_name}_b", w(f"{p}.{ln}.bias"))
        return node("LayerNormalization", [summed, gamma, beta], f"l{i}_{ln_name}", epsilon=eps, axis=-1)

    x = dense_add_norm(
        context, x, "attention.output.dense", "attention.output.LayerNorm", "attn_out", "ln1", f"l{i}_ao"
    )
    h = node("MatMul", [x, init(f"{p}.ff1_w", w(f"{p}.intermediate.dense.weight").T)], f"l{i}_ff1")
    ff1_b = init(f"{p}.ff1_b", w(f"{p}.intermediate.dense.bias"))
    h = node("BiasGelu", [h, ff1_b], f"l{i}_gelu", domain=CONTRIB)  # exact (erf) GELU
    return dense_add_norm(h, x, "output.dense", "output.LayerNorm", "ff2", "ln2", f"l{i}_ff2")
