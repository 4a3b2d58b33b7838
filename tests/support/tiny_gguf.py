"""A tiny real GGUF model written at test time (llama architecture, random weights).

About 440 KB in F32. Every llama.cpp server loads it and streams tokens. The tokenizer is
GPT-2 style with the 256 byte-level tokens (so any text tokenizes), a few merges, three control
tokens and a ChatML template. Output rows of control and non-printable tokens are zeroed so the
random output stays printable and generation runs until ``max_tokens``.

Options give other shapes of the same model: F16 or Q8_0 weights, another context length, no
chat template, mean pooling (an embedding model), rank pooling with a one-label classifier
head (a qwen3-architecture reranker), or llama.cpp split files (``<stem>-00001-of-0000N.gguf``).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_MERGES = ["Ġ t", "Ġ a", "h e", "i n", "r e", "o n", "e r", "Ġ s", "a t", "Ġ w", "e n", "i s"]
_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_FILE_TYPES = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
}


def _byte_tokens() -> list[str]:
    """GPT-2's byte-to-unicode table: one printable character per byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += list(range(ord("®"), ord("ÿ") + 1))
    table = {b: b for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = 256 + extra
            extra += 1
    return [chr(table[b]) for b in range(256)]


def write_tiny_gguf(
    path: Path,
    *,
    context_length: int = 2048,
    seed: int = 0,
    name: str = "tiny",
    file_type: str = "f32",
    chat_template: bool = True,
    pooling: bool = False,
    rerank: bool = False,
    split_max_tensors: int = 0,
    width: int = 64,
    layers: int = 2,
) -> Path:
    """Write the model to ``path`` and return it. ``file_type`` is 'f32', 'f16' or 'q8_0'.

    ``rerank`` writes the qwen3 architecture with rank pooling and a ``cls.output`` head.
    ``width`` and ``layers`` make a bigger model of the same kind (``width=1024, layers=6`` in
    F16: 114 MB, which the benchmarks load). ``split_max_tensors`` > 0 writes llama.cpp split
    parts next to ``path`` (at most that many tensors each) and returns the first part.
    """
    rng = np.random.default_rng(seed)
    d, ff = width, 2 * width
    heads = max(4, width // 64)
    kv_heads = heads // 2
    hd = d // heads
    tokens = _byte_tokens()
    for merge in _MERGES:
        tokens.append(merge.replace(" ", ""))
    tokens += _SPECIALS
    vocab = len(tokens)
    types = [gguf.TokenType.NORMAL] * (vocab - len(_SPECIALS))
    types += [gguf.TokenType.CONTROL] * len(_SPECIALS)
    dtype = np.float16 if file_type == "f16" else np.float32
    quantize = file_type == "q8_0"

    path.parent.mkdir(parents=True, exist_ok=True)
    # llama.cpp loads a rank head only for architectures that have one; qwen3 is llama
    # plus per-head q/k norms.
    arch = "qwen3" if rerank else "llama"
    w = gguf.GGUFWriter(str(path), arch, split_max_tensors=split_max_tensors)
    w.add_name(name)
    w.add_context_length(context_length)
    w.add_embedding_length(d)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(hd)
    w.add_file_type(_FILE_TYPES[file_type])
    if pooling:
        w.add_pooling_type(gguf.PoolingType.MEAN)
    if rerank:
        w.add_pooling_type(gguf.PoolingType.RANK)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(_MERGES)
    w.add_bos_token_id(vocab - 3)
    w.add_eos_token_id(vocab - 1)
    if chat_template:
        w.add_chat_template(CHATML)

    def rand(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(dtype)

    def add_matrix(name: str, data: np.ndarray) -> None:
        if quantize:
            q8 = gguf.GGMLQuantizationType.Q8_0
            w.add_tensor(name, gguf.quants.quantize(data, q8), raw_dtype=q8)
        else:
            w.add_tensor(name, data)

    add_matrix("token_embd.weight", rand(vocab, d))
    for i in range(layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(d, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(d, dtype=np.float32))
        if rerank:
            w.add_tensor(f"blk.{i}.attn_q_norm.weight", np.ones(hd, dtype=np.float32))
            w.add_tensor(f"blk.{i}.attn_k_norm.weight", np.ones(hd, dtype=np.float32))
        add_matrix(f"blk.{i}.attn_q.weight", rand(heads * hd, d))
        add_matrix(f"blk.{i}.attn_k.weight", rand(kv_heads * hd, d))
        add_matrix(f"blk.{i}.attn_v.weight", rand(kv_heads * hd, d))
        add_matrix(f"blk.{i}.attn_output.weight", rand(d, heads * hd))
        add_matrix(f"blk.{i}.ffn_gate.weight", rand(ff, d))
        add_matrix(f"blk.{i}.ffn_up.weight", rand(ff, d))
        add_matrix(f"blk.{i}.ffn_down.weight", rand(d, ff))
    w.add_tensor("output_norm.weight", np.ones(d, dtype=np.float32))
    out = rand(vocab, d, scale=0.5)
    for i in range(vocab):
        if i >= vocab - len(_SPECIALS) or (i < 256 and not 32 <= i < 127):
            out[i] = 0
    add_matrix("output.weight", out)
    if rerank:
        w.add_tensor("cls.output.weight", rand(1, d, scale=0.05))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return w.format_shard_names(path)[0]


if __name__ == "__main__":
    import sys

    print(write_tiny_gguf(Path(sys.argv[1])))
