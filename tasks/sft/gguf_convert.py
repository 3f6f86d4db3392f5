"""GGUF <-> Hugging Face conversion: the `local` profile's stand-ins for the model conversions.

On a GPU cluster the recipe converts HF -> NeMo before training and NeMo -> HF -> TensorRT-LLM
engine after it. On the CPU profile the model exists only as a llama.cpp GGUF file, so:

* ``gguf_to_hf`` dequantizes the GGUF into a float32 HF checkpoint that ``transformers`` trains;
* ``hf_to_gguf`` writes the trained weights back as an F16/F32 GGUF that llama.cpp serves.

``hf_to_gguf`` takes every metadata key (architecture, hyper-parameters, tokenizer, chat template,
special token ids) from the original GGUF, the *template*, and only the tensor data from the
checkpoint: the template is what llama.cpp is known to load, and fine-tuning changes weights only.
Runs in the training environment (.venv-train); torch, transformers and gguf are imported inside
the functions.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tasks.sft.average import atomic_dir, current_umask, load_state_dict

# "template" re-quantizes each tensor to the template's own type (Q4_1, Q8_0, ...): the file is then
# as small and fast as the original, and an unchanged model round-trips to identical tensor bytes.
DTYPES = ("f16", "f32", "template")

# Architectures whose Q/K weights llama.cpp stores permuted (interleaved rotary halves) and
# transformers un-permutes on GGUF load. Only these are supported: for another architecture the
# right layout would have to be checked first, and a wrong one loads fine but generates garbage.
_PERMUTED_QK = {"llama"}

# Buffers some checkpoints carry that are recomputed at load time and have no GGUF tensor.
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


def gguf_to_hf(gguf_path: os.PathLike | str, out_dir: os.PathLike | str) -> Path:
    """Dequantize ``gguf_path`` into a float32 safetensors checkpoint with its tokenizer in ``out_dir``.

    Loading takes ~25 s for SmolLM2-135M on two cores. ``out_dir`` appears complete or not at all.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = Path(gguf_path)
    if not src.is_file():
        raise FileNotFoundError(f"GGUF file not found: {src}")
    with atomic_dir(out_dir) as tmp:
        model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
        # The weights are plain dequantized float32 tensors now, but the model still carries the GGUF
        # "quantization" config: save_pretrained refuses it, and a saved config.json naming it would
        # make every later load look for a GGUF file.
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:
            odd = {str(p.dtype) for p in model.parameters()} - {"torch.float32"}
            if odd:
                raise RuntimeError(f"{src}: transformers kept {sorted(odd)} weights, expected float32 only")
            quantizer.remove_quantization_config(model)
        tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def permute_qk(weight: Any, n_head: int) -> Any:
    """Reorder a Q or K projection (rows = heads x head_dim) from HF's rotary layout to llama.cpp's.

    HF rotates the first and second half of each head's dimensions together; llama.cpp rotates
    adjacent pairs. Within every head, row ``half*i + j`` (i in {0, 1}) moves to ``2*j + i``.
    transformers applies the inverse when it reads a GGUF, so the two must stay exact inverses.
    """
    rows = weight.shape[0]
    if rows % (2 * n_head):
        raise ValueError(f"cannot split {rows} rows into {n_head} heads of an even size")
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _field_value(field: Any) -> Any:
    """A GGUF metadata value as GGUFWriter takes it; strings stay raw bytes so they copy exactly."""
    from gguf import GGUFValueType

    main = field.types[0]
    if main == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]])
    if main == GGUFValueType.ARRAY:
        sub = field.types[-1]
        if len(field.types) != 2:
            raise ValueError(f"nested GGUF array in metadata key {field.name} is not supported")
        if sub == GGUFValueType.STRING:
            return [bytes(field.parts[i]) for i in field.data]
        return field.contents()
    return field.contents()


def _hf_name_hint(name_map: Any, gguf_name: str, present: list[str]) -> str:
    """The HF tensor name a checkpoint like ``present`` would use for ``gguf_name`` (for errors)."""
    base, _, suffix = gguf_name.rpartition(".")
    prefixes = {n.split(".", 1)[0] for n in present}
    for key, (_, target) in name_map.mapping.items():
        if target == base and key != base and key.split(".", 1)[0] in prefixes:
            return f"{key}.{suffix}"
    return "?"


def _meta_int(reader: Any, key: str, template: Path) -> int:
    field = reader.fields.get(key)
    if field is None:
        raise ValueError(f"{template}: template GGUF has no metadata key {key}")
    return int(field.contents())


def hf_to_gguf(
    hf_dir: os.PathLike | str,
    template_gguf: os.PathLike | str,
    out_path: os.PathLike | str,
    dtype: str = "f16",
) -> Path:
    """Write ``out_path``: the template GGUF's metadata and tensor layout with ``hf_dir``'s weights.

    ``hf_dir`` is a ``save_pretrained`` folder or a Trainer ``checkpoint-N`` (single-file or sharded
    safetensors). The output has the template's tensors, names, shapes and order; matrices are
    stored as ``dtype`` (f16 or f32), 1-D tensors (norms) always as F32 as llama.cpp's converter
    does, and ``general.file_type`` says which. With ``dtype="template"`` every tensor keeps the
    template's type (quantized with gguf's own quantizers) and ``general.file_type`` is kept.

    Note that llama.cpp multiplies quantized weights with 8-bit-quantized activations, so an F32
    file of the very same (dequantized) weights gives logits ~0.5 away from the quantized original
    and greedy outputs can part after a few tokens; F32/F16 files match ``transformers`` instead.
    Errors name the tensor and the folder when the checkpoint lacks a tensor, has one the template
    does not, or a shape differs.
    """
    import gguf
    import numpy as np
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    folder, template, target = Path(hf_dir), Path(template_gguf), Path(out_path)
    if not template.is_file():
        raise FileNotFoundError(f"template GGUF not found: {template}")
    reader = gguf.GGUFReader(template)
    arch_name = str(reader.fields["general.architecture"].contents())
    if arch_name not in _PERMUTED_QK:
        raise ValueError(f"{template}: architecture {arch_name!r} is not supported (supported: {sorted(_PERMUTED_QK)})")
    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
    n_head = _meta_int(reader, f"{arch_name}.attention.head_count", template)
    kv_field = reader.fields.get(f"{arch_name}.attention.head_count_kv")
    n_head_kv = int(kv_field.contents()) if kv_field is not None else n_head
    name_map = gguf.get_tensor_name_map(arch, _meta_int(reader, f"{arch_name}.block_count", template))

    state = load_state_dict(folder)
    by_gguf: dict[str, tuple[str, torch.Tensor]] = {}
    unknown = []
    for hf_name, tensor in state.items():
        gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            if not hf_name.endswith(_IGNORED_SUFFIXES):
                unknown.append(hf_name)
            continue
        by_gguf[gguf_name] = (hf_name, tensor)

    template_names = [t.name for t in reader.tensors]
    # A tied model (SmolLM2) has no output.weight in GGUF; transformers may or may not save the
    # tied lm_head. Accept it only if it really is the embedding, or llama.cpp would serve a
    # different head from the one that was trained.
    if "output.weight" in by_gguf and "output.weight" not in template_names:
        lm_name, lm_head = by_gguf.pop("output.weight")
        embed = by_gguf.get("token_embd.weight")
        if embed is None or not torch.equal(lm_head, embed[1]):
            raise ValueError(
                f"{folder}: {lm_name} differs from the input embedding, but the template {template} "
                "ties them (no output.weight); an untied head cannot be written into this layout"
            )
    extra = sorted(set(by_gguf) - set(template_names)) + unknown
    if extra:
        raise ValueError(f"{folder}: checkpoint has tensors the template {template} lacks: {', '.join(extra[:8])}")
    missing = [n for n in template_names if n not in by_gguf]
    if missing:
        hints = [f"{n} (HF {_hf_name_hint(name_map, n, list(state))})" for n in missing[:8]]
        raise ValueError(f"{folder}: checkpoint is missing tensor(s) {', '.join(hints)}")

    file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "f32": gguf.LlamaFileType.ALL_F32}.get(dtype)
    fd, tmp_name = _temp_beside(target)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp_name, arch_name)
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key == gguf.Keys.General.ARCHITECTURE:
                continue  # the header fields, and the key GGUFWriter always adds itself
            if key == gguf.Keys.General.ALIGNMENT:
                writer.add_custom_alignment(int(field.contents()))
                continue
            value = _field_value(field)
            if key == gguf.Keys.General.FILE_TYPE and file_type is not None:
                value = int(file_type)
            sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(key, value, field.types[0], sub_type)
        if gguf.Keys.General.FILE_TYPE not in reader.fields and file_type is not None:
            writer.add_file_type(int(file_type))

        for t in reader.tensors:
            hf_name, tensor = by_gguf[t.name]
            want = tuple(int(x) for x in reversed(t.shape.tolist()))  # GGUF lists dims innermost first
            if tuple(tensor.shape) != want:
                raise ValueError(
                    f"{folder}: tensor {hf_name} has shape {list(tensor.shape)}, template {t.name} needs {list(want)}"
                )
            array = tensor.to(torch.float32).numpy()
            if t.name.endswith("attn_q.weight"):
                array = permute_qk(array, n_head)
            elif t.name.endswith("attn_k.weight"):
                array = permute_qk(array, n_head_kv)
            if dtype == "template":
                writer.add_tensor(t.name, _quantize(array, t.tensor_type, t.name), raw_dtype=t.tensor_type)
                continue
            if dtype == "f16" and array.ndim > 1:
                array = array.astype(np.float16)
            writer.add_tensor(t.name, np.ascontiguousarray(array))

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(tmp_name, 0o666 & ~current_umask())  # mkstemp makes it private; the server may be another user
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return target


def _quantize(array: Any, qtype: Any, name: str) -> Any:
    """``array`` (float32) in GGUF type ``qtype``: raw bytes for quantized types, else a typed array."""
    import numpy as np
    from gguf import GGMLQuantizationType
    from gguf.quants import QuantError, quantize

    if qtype == GGMLQuantizationType.F32:
        return np.ascontiguousarray(array, dtype=np.float32)
    if qtype == GGMLQuantizationType.F16:
        return np.ascontiguousarray(array, dtype=np.float16)
    try:
        return quantize(array, qtype)
    except (NotImplementedError, QuantError) as exc:
        raise ValueError(f"tensor {name}: cannot write the template's type {qtype.name} ({exc}); use f16") from None


def _temp_beside(target: Path) -> tuple[int, str]:
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
