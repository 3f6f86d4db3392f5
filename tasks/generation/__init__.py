"""``skillflow generate``: NeMo-Skills style generation with code execution against any
OpenAI-compatible completions server (vLLM, TensorRT-LLM's ``trtllm-serve``, llama.cpp).

* :mod:`tasks.generation.client` -- ``POST /v1/completions`` and the sampling settings of
  docs/recipes/openmath.md §4.4;
* :mod:`tasks.generation.code_loop` -- the code-execution loop of docs/recipes/openmath.md §5.2;
* :mod:`tasks.generation.runner` -- files: prompts, resume (skip-filled), seeds, ``.done`` markers;
* :mod:`tasks.generation.cli` -- the command.
"""
