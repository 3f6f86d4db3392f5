"""OpenMath prompt formats as data, and the renderer that turns a question dict into a prompt.

The prompt configs and few-shot example sets are NeMo-Skills' own files (``data/``, see
``data/CREDITS.md``), so that a prompt we send is the one the published numbers were measured
with. Rendering follows docs/recipes/openmath.md §8.1 in three steps:

1. each of the first ``num_few_shots`` examples of ``examples_type`` is filled into the config's
   ``few_shot_examples.template`` together with its own context;
2. ``user`` is filled with the joined ``{examples}``, the question's ``{context}`` and the
   question's fields;
3. ``prompt_template`` is filled with ``{system}``, ``{user}`` and an empty ``{generation}``.

Use :func:`render_prompt` (or :func:`load_prompt` and :meth:`PromptConfig.render` in loops).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

_DATA = Path(__file__).with_name("data")

#: Context templates by ``context_type`` (docs/recipes/openmath.md §8.1), filled from the question or example dict.
CONTEXT_TEMPLATES: dict[str, str] = {
    "empty": "",
    "reference_solution": "\n\nReference solution (do not copy it):\n{reference_solution}",
    "masked_solution": "\n\nReference solution:\n{masked_reference_solution}",
}


class PromptError(ValueError):
    """A prompt cannot be rendered; the message names the prompt, the parameter or the field."""


@functools.lru_cache(maxsize=1)
def few_shot_sets() -> dict[str, list[dict[str, Any]]]:
    """All few-shot example sets by name (e.g. ``gsm8k_text_with_code``), read once."""
    with open(_DATA / "few_shot_examples.json", encoding="utf-8") as fh:
        return json.load(fh)


def available_prompts() -> list[str]:
    """Prompt config names, e.g. ``openmathinstruct/sft``."""
    return sorted(str(p.relative_to(_DATA).with_suffix("")) for p in _DATA.rglob("*.yaml"))


@dataclass(frozen=True)
class PromptConfig:
    """One prompt config file (``data/<name>.yaml``)."""

    name: str
    system: str
    user: str
    prompt_template: str
    stop_phrases: tuple[str, ...]
    example_template: str | None

    def render(self, question: Mapping[str, Any], *, num_few_shots: int = 0, examples_type: str | None = None,
               context_type: str = "empty") -> str:
        """The prompt string for ``question`` (a dataset line); see the module docstring.

        ``num_few_shots`` defaults to 0 as upstream's PromptConfig does (docs/recipes/openmath.md §8.1); the labeling
        recipes must pass 5 explicitly (docs/recipes/openmath.md §8.2).
        """
        context_template = _context_template(context_type)
        examples = ""
        if num_few_shots:
            examples = "".join(self._render_example(ex, i, examples_type, context_template)
                               for i, ex in enumerate(_examples(examples_type, num_few_shots)))
        fields = dict(question)
        fields["context"] = _fill(context_template, question, f"question for prompt {self.name}")
        fields["examples"] = examples
        user = _fill(self.user, fields, f"question for prompt {self.name}")
        return self.prompt_template.format(system=self.system, user=user, generation="")

    def _render_example(self, example: Mapping[str, Any], index: int, examples_type: str | None,
                        context_template: str) -> str:
        if self.example_template is None:
            raise PromptError(f"prompt {self.name} has no few_shot_examples.template; use num_few_shots=0")
        where = f"few-shot example {index} of {examples_type}"
        fields = {**example, "context": _fill(context_template, example, where)}
        return _fill(self.example_template, fields, where)


def _context_template(context_type: str) -> str:
    try:
        return CONTEXT_TEMPLATES[context_type]
    except KeyError:
        raise PromptError(f"unknown context_type {context_type!r}; valid: {sorted(CONTEXT_TEMPLATES)}") from None


def _examples(examples_type: str | None, count: int) -> list[dict[str, Any]]:
    sets = few_shot_sets()
    if count < 0:
        raise PromptError(f"num_few_shots must be >= 0, got {count}")
    if examples_type not in sets:
        raise PromptError(f"num_few_shots={count} needs examples_type, one of {sorted(sets)}; got {examples_type!r}")
    chosen = sets[examples_type]
    if count > len(chosen):
        raise PromptError(f"num_few_shots={count} but examples_type {examples_type} has only {len(chosen)} examples")
    return chosen[:count]


def _fill(template: str, fields: Mapping[str, Any], where: str) -> str:
    try:
        return template.format_map(fields)
    except KeyError as exc:
        raise PromptError(f"{where} lacks field {exc.args[0]!r} needed by the template") from None


@functools.lru_cache(maxsize=None)
def load_prompt(name: str) -> PromptConfig:
    """Read ``data/<name>.yaml``; ``name`` is e.g. ``openmathinstruct/sft``."""
    import yaml

    path = _DATA / f"{name}.yaml"
    if not path.is_file() or ".." in Path(name).parts:
        raise PromptError(f"unknown prompt {name!r}; available: {available_prompts()}")
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    few_shot = raw.get("few_shot_examples") or {}
    try:
        return PromptConfig(name=name, system=raw.get("system") or "", user=raw["user"],
                            prompt_template=raw["prompt_template"],
                            stop_phrases=tuple(raw.get("stop_phrases") or ()),
                            example_template=few_shot.get("template"))
    except KeyError as exc:
        raise PromptError(f"{path.name}: prompt config lacks {exc.args[0]!r}") from None


def render_prompt(name: str, question: Mapping[str, Any], *, num_few_shots: int = 0,
                  examples_type: str | None = None, context_type: str = "empty") -> str:
    """Render prompt ``name`` for ``question``; shorthand for ``load_prompt(name).render(...)``."""
    return load_prompt(name).render(question, num_few_shots=num_few_shots, examples_type=examples_type,
                                    context_type=context_type)
