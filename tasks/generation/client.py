"""A small client for OpenAI-compatible ``POST {base_url}/v1/completions`` servers.

Sampling follows docs/recipes/openmath.md §4.4: greedy is temperature 0 with top_k 1 and top_p 1 (what TensorRT-LLM
gets as "temperature 1.0, top_k 1" upstream; OpenAI-style servers take temperature 0 as greedy),
evaluation sampling is T=0.7, top_p=0.95, labeling T=1.0, top_p=0.95; the seed goes as ``seed``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


class GenerationError(RuntimeError):
    """The completions server failed in a way retries did not fix; the message names the URL."""


@dataclass(frozen=True)
class Sampling:
    """Sampling settings sent with every request of one output file."""

    temperature: float
    top_p: float
    top_k: int | None = None
    seed: int | None = None

    @classmethod
    def greedy(cls) -> "Sampling":
        return cls(temperature=0.0, top_p=1.0, top_k=1, seed=0)

    @classmethod
    def random(cls, seed: int, temperature: float = 0.7, top_p: float = 0.95) -> "Sampling":
        return cls(temperature=temperature, top_p=top_p, top_k=None, seed=seed)

    def request_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p}
        if self.top_k is not None:  # top_k is a widely accepted extension, sent only when it matters
            fields["top_k"] = self.top_k
        if self.seed is not None:
            fields["seed"] = self.seed
        return fields


@dataclass(frozen=True)
class Completion:
    """One choice of a completions response.

    ``stop_reason`` is the matched stop string where the server reports it (vLLM and
    TensorRT-LLM do, as ``stop_reason``); llama.cpp servers only say ``finish_reason: "stop"``.
    """

    text: str
    finish_reason: str | None
    stop_reason: Any = None


class OpenAIHTTPClient:
    """Thread-safe POSTs to one endpoint of an OpenAI-compatible server; one ``requests.Session``
    per thread. 5xx answers and lost connections are retried with backoff; a 4xx is not (the
    request itself is wrong, e.g. prompt plus ``max_tokens`` exceed the context)."""

    path = ""

    def __init__(self, base_url: str, *, timeout_s: float = 600.0, retries: int = 3, backoff_s: float = 1.0):
        url = base_url.rstrip("/")
        self.base_url = url[: -len("/v1")] if url.endswith("/v1") else url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._local = threading.local()

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}{self.path}"

    def _session(self) -> Any:
        """This thread's session; urllib3 retries lost connections, timeouts and 5xx answers of
        every request (POSTs included: a completion has no side effect), with exponential backoff."""
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        if not hasattr(self._local, "session"):
            retry = Retry(total=self.retries, status_forcelist=range(500, 600), allowed_methods=None,
                          backoff_factor=self.backoff_s, raise_on_status=False, respect_retry_after_header=False)
            session = requests.Session()
            for prefix in ("http://", "https://"):
                session.mount(prefix, HTTPAdapter(max_retries=retry))
            self._local.session = session
        return self._local.session

    def first_choice(self, body: dict[str, Any], what: str = "the request") -> tuple[dict[str, Any], str]:
        """``choices[0]`` of the answer and the raw text (for error messages)."""
        import requests

        failed = f"{self.endpoint} failed {self.retries + 1} times for {what}; last error"
        try:
            resp = self._session().post(self.endpoint, json=body, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise GenerationError(f"{failed}: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 500:
            raise GenerationError(f"{failed}: HTTP {resp.status_code}: {resp.text[:300]}")
        if resp.status_code != 200:
            raise GenerationError(f"{self.endpoint} rejected {what} with HTTP {resp.status_code}: {resp.text[:500]}")
        try:
            return resp.json()["choices"][0], resp.text
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise GenerationError(f"{self.endpoint} answered {what} without choices[0]: {exc!r}: "
                                  f"{resp.text[:300]}") from None


class CompletionsClient(OpenAIHTTPClient):
    """``POST {base_url}/v1/completions`` for one served model."""

    path = "/v1/completions"

    def __init__(self, base_url: str, model: str, **kwargs: Any):
        super().__init__(base_url, **kwargs)
        self.model = model

    def complete(self, prompt: str, *, max_tokens: int, sampling: Sampling, stop: list[str]) -> Completion:
        """Generate up to ``max_tokens`` new tokens after ``prompt``; stop strings are not in ``text``."""
        body = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens, "n": 1, "stream": False,
                **sampling.request_fields()}
        if stop:
            body["stop"] = list(stop)
        choice, raw = self.first_choice(body)
        try:
            return Completion(text=choice["text"] or "", finish_reason=choice.get("finish_reason"),
                              stop_reason=choice.get("stop_reason"))
        except (KeyError, TypeError) as exc:
            raise GenerationError(f"{self.endpoint} answered without choices[0].text: {exc!r}: {raw[:300]}") from None
