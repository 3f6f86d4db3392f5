"""GGUF <-> HF conversion: a tiny hand-made model for layout and errors, the real SmolLM2 for the round trip.

Conversion needs torch/transformers/gguf, so it runs in the training environment's python in a
subprocess that reports JSON; llama.cpp (llama-cpp-python) runs here, in the worker environment,
exactly as the local model server will load the files. The real round trip loads the model once
(~25 s) and checks, for SmolLM2-135M-Instruct Q4_1:

* ``dtype="template"`` (re-quantized to Q4_1/Q8_0) gives the original tensor bytes back, and
  llama.cpp's greedy completions and logits equal the original's;
* ``dtype="f32"`` holds exactly the dequantized original weights, and llama.cpp's greedy
  completions equal transformers' on the HF checkpoint, logits within 0.05. (They do *not* equal
  the Q4_1 original's: llama.cpp multiplies quantized weights with 8-bit activations; the
  difference is measured and printed.)
"""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tasks.sft.cli import ROOT, main as sft_main, train_python

GGUF_ENV = "SKILLFLOW_SMOLLM2_GGUF"
DEFAULT_GGUF = ROOT / ".venv" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "<|im_start|>user\nWhat is 12 * 7?<|im_end|>\n<|im_start|>assistant\n",
]
NEW_TOKENS = 16


def _run_train(script: str, *args: str, timeout: int = 300) -> dict:
    # One thread: on a shared 2-core machine, spinning OpenMP threads make torch many times slower.
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    python = train_python()
    if not python.exists():
        pytest.fail(f"training environment python not found at {python}: `make install` builds it "
                    "(or set SKILLFLOW_TRAIN_PYTHON)")
    proc = subprocess.run([str(python), "-c", script, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- a tiny llama: layout, permutation, metadata, errors -------------------------------------------

TINY = textwrap.dedent(
    """
    import json, os, sys, shutil
    from pathlib import Path
    import gguf, numpy as np, torch
    from safetensors.torch import save_file
    from tasks.sft.gguf_convert import hf_to_gguf

    root = Path(sys.argv[1])
    V, E, F, H, KV, B = 10, 8, 16, 2, 1, 2      # vocab, embedding, ffn, heads, kv heads, blocks (head_dim 4)
    w = gguf.GGUFWriter(root / "template.gguf", "llama")
    w.add_name("tiny")
    w.add_block_count(B); w.add_context_length(64); w.add_embedding_length(E); w.add_feed_forward_length(F)
    w.add_head_count(H); w.add_head_count_kv(KV); w.add_layer_norm_rms_eps(1e-5); w.add_file_type(3)
    w.add_tokenizer_model("gpt2"); w.add_token_list([f"t{i}" for i in range(V - 1)] + ["\\u0120caf\\u00e9"])
    w.add_token_types([1] * V); w.add_token_merges(["t 1", "t 2"]); w.add_bos_token_id(1)
    w.add_chat_template("{{ messages }}")
    names = {"token_embd.weight": (V, E)}
    for b in range(B):
        names.update({f"blk.{b}.attn_norm.weight": (E,), f"blk.{b}.attn_q.weight": (E, E),
                      f"blk.{b}.attn_k.weight": (KV * 4, E), f"blk.{b}.attn_v.weight": (KV * 4, E),
                      f"blk.{b}.attn_output.weight": (E, E), f"blk.{b}.ffn_norm.weight": (E,),
                      f"blk.{b}.ffn_gate.weight": (F, E), f"blk.{b}.ffn_up.weight": (F, E),
                      f"blk.{b}.ffn_down.weight": (E, F)})
    names["output_norm.weight"] = (E,)
    for n, shape in names.items():
        w.add_tensor(n, np.zeros(shape, np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()

    g = torch.Generator().manual_seed(0)
    def r(*shape):
        return torch.randn(*shape, generator=g)
    state = {"model.embed_tokens.weight": r(V, E), "model.norm.weight": r(E)}
    for b in range(B):
        p = f"model.layers.{b}."
        state.update({p + "input_layernorm.weight": r(E), p + "self_attn.q_proj.weight": r(E, E),
                      p + "self_attn.k_proj.weight": r(KV * 4, E), p + "self_attn.v_proj.weight": r(KV * 4, E),
                      p + "self_attn.o_proj.weight": r(E, E), p + "post_attention_layernorm.weight": r(E),
                      p + "mlp.gate_proj.weight": r(F, E), p + "mlp.up_proj.weight": r(F, E),
                      p + "mlp.down_proj.weight": r(E, F)})
    # Rows numbered so the permutation can be checked by hand.
    state["model.layers.0.self_attn.q_proj.weight"] = torch.arange(E).float()[:, None].repeat(1, E)
    state["model.layers.0.self_attn.k_proj.weight"] = torch.arange(KV * 4).float()[:, None].repeat(1, E)

    def ckpt(name, tensors, sharded=False):
        d = root / name
        d.mkdir(parents=True)
        if not sharded:
            save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
        else:
            keys = sorted(tensors)
            half = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
            for f, ks in half.items():
                save_file({k: tensors[k] for k in ks}, str(d / f), metadata={"format": "pt"})
            (d / "model.safetensors.index.json").write_text(
                json.dumps({"weight_map": {k: f for f, ks in half.items() for k in ks}}))
            for junk in ("optimizer.pt", "trainer_state.json"):
                (d / junk).write_text("x")
        return d

    def read(path):
        rd = gguf.GGUFReader(path)
        meta = {}
        for k, f in rd.fields.items():
            if not k.startswith("GGUF."):
                meta[k] = [f.types[0].name, [bytes(f.parts[i]).hex() for i in f.data]]
        tensors = {t.name: [t.tensor_type.name, [int(x) for x in t.shape], np.asarray(t.data).astype(float).tolist()]
                   for t in rd.tensors}
        return {"meta": meta, "order": [t.name for t in rd.tensors], "tensors": tensors}

    report = {"errors": {}, "hf": {k: v.tolist() for k, v in state.items()}}
    good = ckpt("hf", state)
    report["template"] = read(root / "template.gguf")
    report["f16"] = read(hf_to_gguf(good, root / "template.gguf", root / "t16.gguf", "f16"))
    report["f32"] = read(hf_to_gguf(good, root / "template.gguf", root / "t32.gguf", "f32"))
    sharded = ckpt("run/checkpoint-3", state, sharded=True)
    report["sharded_same"] = (root / "t16.gguf").read_bytes() == hf_to_gguf(
        sharded, root / "template.gguf", root / "s16.gguf").read_bytes()
    tied = dict(state, **{"lm_head.weight": state["model.embed_tokens.weight"].clone()})
    report["tied_ok"] = (root / "t16.gguf").read_bytes() == hf_to_gguf(
        ckpt("tied", tied), root / "template.gguf", root / "tied.gguf").read_bytes()

    (root / "keep.gguf").write_bytes(b"previous result")
    def error(case, tensors):
        folder = ckpt(case, tensors)
        try:
            hf_to_gguf(folder, root / "template.gguf", root / "keep.gguf", "f16")
        except Exception as exc:
            report["errors"][case] = [type(exc).__name__, str(exc), str(folder)]
    missing = dict(state); del missing["model.layers.1.self_attn.k_proj.weight"]
    error("missing", missing)
    error("shape", dict(state, **{"model.layers.1.mlp.up_proj.weight": r(F + 1, E)}))
    error("untied", dict(state, **{"lm_head.weight": r(V, E)}))
    error("unknown", dict(state, **{"model.layers.0.mystery.weight": r(2)}))
    try:
        hf_to_gguf(root / "nowhere", root / "template.gguf", root / "x.gguf")
    except Exception as exc:
        report["errors"]["noweights"] = [type(exc).__name__, str(exc), str(root / "nowhere")]
    report["kept"] = (root / "keep.gguf").read_bytes().decode()
    report["leftovers"] = sorted(p.name for p in root.iterdir() if p.name.startswith("."))
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    return _run_train(TINY, str(tmp_path_factory.mktemp("tiny")))


def test_tiny_layout_and_metadata(tiny):
    template, f16 = tiny["template"], tiny["f16"]
    assert f16["order"] == template["order"]
    for name, (ttype, shape, _) in template["tensors"].items():
        otype, oshape, _ = f16["tensors"][name]
        assert oshape == shape
        assert otype == ("F32" if len(shape) == 1 else "F16"), name
        assert tiny["f32"]["tensors"][name][0] == "F32"
    # Every metadata key and value is the template's (byte for byte), except the file type.
    changed = {k for k in template["meta"] if template["meta"][k] != f16["meta"].get(k)}
    assert changed == {"general.file_type"} and f16["meta"].keys() == template["meta"].keys()
    assert f16["meta"]["general.file_type"][1] == [(1).to_bytes(4, "little").hex()]  # MOSTLY_F16
    assert tiny["f32"]["meta"]["general.file_type"][1] == [(0).to_bytes(4, "little").hex()]  # ALL_F32


def test_tiny_values_and_qk_permutation(tiny):
    hf, f32 = tiny["hf"], tiny["f32"]["tensors"]
    # Rows of a head are [first half | second half] in HF and interleaved in llama.cpp:
    # head_dim 4 -> rows 0, 2, 1, 3 of each head.
    q_rows = [row[0] for row in f32["blk.0.attn_q.weight"][2]]
    assert q_rows == [0, 2, 1, 3, 4, 6, 5, 7]
    k_rows = [row[0] for row in f32["blk.0.attn_k.weight"][2]]
    assert k_rows == [0, 2, 1, 3]  # one kv head
    order = [0, 2, 1, 3, 4, 6, 5, 7]
    assert f32["blk.1.attn_q.weight"][2] == [hf["model.layers.1.self_attn.q_proj.weight"][i] for i in order]
    assert f32["blk.1.attn_v.weight"][2] == hf["model.layers.1.self_attn.v_proj.weight"]
    assert f32["token_embd.weight"][2] == hf["model.embed_tokens.weight"]
    assert f32["blk.1.ffn_down.weight"][2] == hf["model.layers.1.mlp.down_proj.weight"]
    f16 = np.array(tiny["f16"]["tensors"]["blk.1.ffn_up.weight"][2])
    assert np.allclose(f16, hf["model.layers.1.mlp.up_proj.weight"], atol=2e-3)


def test_tiny_trainer_checkpoint_and_tied_head(tiny):
    assert tiny["sharded_same"] is True
    assert tiny["tied_ok"] is True


@pytest.mark.parametrize(
    "case, parts",
    [
        ("missing", ["missing tensor(s) blk.1.attn_k.weight (HF model.layers.1.self_attn.k_proj.weight)"]),
        ("shape", ["tensor model.layers.1.mlp.up_proj.weight has shape [17, 8], template blk.1.ffn_up.weight "
                   "needs [16, 8]"]),
        ("untied", ["lm_head.weight differs from the input embedding", "ties them"]),
        ("unknown", ["checkpoint has tensors the template", "model.layers.0.mystery.weight"]),
        ("noweights", ["checkpoint folder not found"]),
    ],
)
def test_tiny_errors_name_tensor_and_folder(tiny, case, parts):
    kind, message, folder = tiny["errors"][case]
    assert kind in ("ValueError", "FileNotFoundError")
    assert folder in message
    for part in parts:
        assert part in message


def test_tiny_failure_keeps_previous_output(tiny):
    assert tiny["kept"] == "previous result"
    assert tiny["leftovers"] == []


# --- the real model: one load, round trip, llama.cpp --------------------------------------------

ROUND_TRIP = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import gguf, numpy as np, torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from tasks.sft.gguf_convert import gguf_to_hf, hf_to_gguf

    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    prompts, new_tokens = json.loads(sys.argv[3]), int(sys.argv[4])
    t = {}
    t0 = time.time(); gguf_to_hf(src, out / "hf"); t["gguf_to_hf"] = time.time() - t0
    t0 = time.time(); hf_to_gguf(out / "hf", src, out / "f32.gguf", "f32"); t["hf_to_gguf_f32"] = time.time() - t0
    t0 = time.time(); hf_to_gguf(out / "hf", src, out / "q.gguf", "template"); t["hf_to_gguf_q"] = time.time() - t0

    orig, f32, q = (gguf.GGUFReader(p) for p in (src, out / "f32.gguf", out / "q.gguf"))
    assert [x.name for x in orig.tensors] == [x.name for x in f32.tensors] == [x.name for x in q.tensors]
    def same(a, b):
        return np.array_equal(gguf.dequantize(a.data, a.tensor_type).reshape(-1), np.asarray(b.data).reshape(-1))
    f32_diff = [a.name for a, b in zip(orig.tensors, f32.tensors) if not same(a, b)]
    q_diff = [a.name for a, b in zip(orig.tensors, q.tensors)
              if a.tensor_type != b.tensor_type or bytes(a.data) != bytes(b.data)]

    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(out / "hf", dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(out / "hf")
    hf = []
    for p in prompts:
        ids = tok(p, add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
            gen = model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False)[0, len(ids):]
        hf.append({"ids": ids, "gen": gen.tolist(), "logits": logits.tolist()})
    t["hf_generate"] = time.time() - t0
    print(json.dumps({"times": t, "f32_diff": f32_diff, "q_diff": q_diff, "hf": hf,
                      "eos": tok.eos_token_id, "config": json.loads((out / "hf" / "config.json").read_text())}))
    """
)


def _smollm2() -> Path:
    path = Path(os.environ.get(GGUF_ENV) or DEFAULT_GGUF)
    if not path.is_file():
        pytest.fail(f"SmolLM2 GGUF not found at {path} (${GGUF_ENV}); `make install` downloads it")
    return path


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    src = _smollm2()
    out = tmp_path_factory.mktemp("roundtrip")
    start = time.time()
    report = _run_train(ROUND_TRIP, str(src), str(out), json.dumps(PROMPTS), str(NEW_TOKENS), timeout=600)
    report["paths"] = {"orig": src, "f32": out / "f32.gguf", "q": out / "q.gguf", "hf": out / "hf"}
    report["times"]["subprocess"] = time.time() - start
    yield report
    for name in ("f32.gguf", "q.gguf", "hf/model.safetensors"):  # ~1.2 GB; pytest keeps old tmp dirs
        (out / name).unlink(missing_ok=True)


def _llama_cpp(path: Path, eos: int) -> list[dict]:
    """Greedy continuation and last-prompt-token logits of every prompt, as the local server computes them."""
    import llama_cpp

    # One thread for the same reason as above: llama.cpp's threads spin-wait on each other.
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=1, logits_all=True, verbose=False)
    out = []
    for prompt in PROMPTS:
        ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        gen = []
        for token in llm.generate(ids, top_k=1, temp=0.0, reset=True):
            gen.append(int(token))
            if token == eos or len(gen) == NEW_TOKENS:
                break
        out.append({"ids": ids, "gen": gen, "logits": logits})
    llm.close()
    return out


@pytest.fixture(scope="module")
def served(round_trip):
    start = time.time()
    eos = round_trip["eos"]
    runs = {name: _llama_cpp(round_trip["paths"][name], eos) for name in ("orig", "q", "f32")}
    round_trip["times"]["llama_cpp"] = time.time() - start
    return runs


def test_round_trip_weights_are_exact(round_trip):
    assert round_trip["q_diff"] == []  # re-quantized tensors are byte-identical to the original's
    assert round_trip["f32_diff"] == []  # f32 tensors are exactly the dequantized original's
    config = round_trip["config"]
    assert config["tie_word_embeddings"] is True and "quantization_config" not in config
    assert (round_trip["paths"]["hf"] / "tokenizer.json").is_file()


def test_template_dtype_serves_like_the_original(served):
    for orig, q in zip(served["orig"], served["q"]):
        assert q["ids"] == orig["ids"]
        assert q["gen"] == orig["gen"]
        assert np.abs(q["logits"] - orig["logits"]).max() == 0.0


def test_f32_serves_like_transformers(round_trip, served):
    diffs = []
    for hf, f32 in zip(round_trip["hf"], served["f32"]):
        assert f32["ids"] == hf["ids"]  # the GGUF tokenizer and the saved HF tokenizer agree
        assert f32["gen"] == hf["gen"]
        diffs.append(float(np.abs(f32["logits"] - np.array(hf["logits"])).max()))
    quantized_compute = [float(np.abs(a["logits"] - b["logits"]).max()) for a, b in zip(served["orig"], served["f32"])]
    print(f"\nSmolLM2 round trip: max |logit diff| llama.cpp f32 vs transformers {max(diffs):.4f}; "
          f"llama.cpp f32 vs Q4_1 original {max(quantized_compute):.3f}; times "
          + ", ".join(f"{k} {v:.1f}s" for k, v in round_trip["times"].items()))
    assert max(diffs) < 0.05
    assert max(quantized_compute) < 2.0  # same weights, 8-bit activations in the Q4_1 kernels


def test_cli_conversion_needs_the_training_environment(capsys):
    assert sft_main(["hf-to-gguf", "x", "t.gguf", "o.gguf"]) == 2
    assert "-m tasks.sft.cli hf-to-gguf" in capsys.readouterr().err
