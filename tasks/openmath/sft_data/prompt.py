"""The SFT ``input`` string: the zero-shot ``openmathinstruct/sft`` prompt with an empty context
(docs/recipes/openmath.md §8.1, §9.3).

Kept here as one f-string, not rendered through :mod:`tasks.prompts`, because prepare builds it
for every one of ~1M entries. It must equal what evaluation later sends to the fine-tuned model;
``tests/unit/test_sft_data_filters.py`` pins it to ``render_prompt("openmathinstruct/sft", ...)``.
"""
from __future__ import annotations

SYSTEM_LINE = (
    "You're an expert Python programmer and mathematician. Help the user to solve this problem "
    "using code when necessary. Make sure to put the answer (and only answer) inside \\boxed{}."
)


def sft_input(question: str) -> str:
    """Return ``System:\\n<system>\\n\\nUser:\\n<question>\\n\\nAssistant:\\n``; the question is used verbatim."""
    return f"System:\n{SYSTEM_LINE}\n\nUser:\n{question}\n\nAssistant:\n"
