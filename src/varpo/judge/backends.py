"""Where judgments come from: an OpenAI-compatible chat-completions endpoint, or a transformers model in process.

Both expose ``async complete(messages, schema, timeout) -> str`` (the reply text) and ``identity`` (model +
sampling settings: the judge part of every cache key). Errors are raised as they come; the runner
(:mod:`varpo.judge.runner`) owns timeouts, retries and concurrency. :class:`PermanentError` marks a failure that a
retry cannot fix (HTTP 4xx other than 408/409/429: bad request, wrong model name, bad key).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any


class PermanentError(RuntimeError):
    """A request the server refused for good (not retried)."""


def _api_error(err: Exception) -> Exception:
    status = getattr(err, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500 and status not in (408, 409, 429):
        return PermanentError(f"HTTP {status}: {str(err)[:200]}")
    return err


class OpenAIBackend:
    """A chat-completions endpoint (vLLM, SGLang, TGI, OpenAI, ...) through the ``openai`` client.

    Args:
        base_url: e.g. ``http://judge-host:8000/v1``.
        model: the served model name.
        api_key_env: environment variable holding the API key, read when the client is created (the key is never
            stored in configs, pickles or cache keys); unset means "EMPTY", what local vLLM/SGLang servers accept.
        temperature, max_tokens: sampling of the judgment (temperature 0: the same request gives the same
            judgment, which is what makes caching sound).
        json_schema: send ``response_format={"type": "json_schema", ...}`` describing the exact object expected
            (vLLM/SGLang/OpenAI then constrain decoding to it); turn off for servers without structured outputs.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.0,
        max_tokens: int = 512,
        json_schema: bool = True,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.json_schema = bool(json_schema)
        self._clients: dict[int, Any] = {}  # one client per event loop (httpx clients are loop-bound)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_clients"} | {"_clients": {}}

    def check(self) -> None:
        """Raise the configuration error now (called before the first judgment, not at task construction, so data
        can be generated and loaded without a judge)."""
        check_endpoint(self.base_url, self.model)
        try:  # imported here, in the caller's thread: a first import inside the event loop would eat the timeout
            import openai  # noqa: F401
        except ImportError:
            raise ImportError(
                "the OpenAI-compatible judge needs the openai client: pip install 'varpo[judge]'"
            ) from None

    @property
    def identity(self) -> str:
        return f"openai:{self.model}:t={self.temperature:g}:max={self.max_tokens}:schema={int(self.json_schema)}"

    def describe(self) -> str:
        return f"{self.model} at {self.base_url} (key from ${self.api_key_env})"

    def _client(self):
        loop = id(asyncio.get_running_loop())
        if loop not in self._clients:
            from openai import AsyncOpenAI

            key = os.environ.get(self.api_key_env) or "EMPTY"
            # Retries and timeouts are the runner's (counted, bounded); the client must not add its own.
            self._clients[loop] = AsyncOpenAI(base_url=self.base_url, api_key=key, max_retries=0)
        return self._clients[loop]

    async def complete(self, messages: list[dict], schema: dict | None, timeout: float) -> str:
        import openai

        kwargs: dict[str, Any] = dict(
            model=self.model,
            messages=messages,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            timeout=timeout,
        )
        if schema is not None and self.json_schema:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "judgment", "schema": schema, "strict": True},
            }
        try:
            response = await self._client().chat.completions.create(**kwargs)
        except openai.APIStatusError as err:
            raise _api_error(err) from err
        if not response.choices:
            raise ValueError("judge reply has no choices")
        content = response.choices[0].message.content
        if not isinstance(content, str):
            raise ValueError("judge reply has no text content")
        return content


class TransformersBackend:
    """A causal LM loaded with transformers in this process; greedy decoding, one request at a time.

    For small set-ups and tests: generation holds a lock (the model is not thread-safe), so ``judge_concurrency``
    does not parallelise it. A request that times out stops being waited for; its generation still finishes in the
    background before the next one starts.
    """

    def __init__(self, model: str, max_tokens: int = 256, device: str | None = None) -> None:
        self.model_path = model
        self.max_tokens = int(max_tokens)
        self.device = device
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"model_path": self.model_path, "max_tokens": self.max_tokens, "device": self.device}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["model_path"], state["max_tokens"], state["device"])

    def check(self) -> None:
        return None

    @property
    def identity(self) -> str:
        return f"transformers:{self.model_path}:greedy:max={self.max_tokens}"

    def describe(self) -> str:
        return f"{self.model_path} (transformers, in process)"

    def _load(self):
        if self._model is None:
            from varpo import models

            model, tokenizer = models.load(self.model_path)
            if self.device:
                model = model.to(self.device)
            self._model, self._tokenizer = model.eval(), tokenizer
        return self._model, self._tokenizer

    def generate(self, messages: list[dict]) -> str:
        import torch

        with self._lock:
            model, tokenizer = self._load()
            if getattr(tokenizer, "chat_template", None):
                text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            else:
                text = "\n\n".join(m["content"] for m in messages) + "\n\n"
            inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
            limit = getattr(model.config, "max_position_embeddings", None)
            if limit:  # keep the prompt's tail so prompt + reply fit the context
                keep = max(limit - self.max_tokens, 1)
                inputs = {k: v[:, -keep:] for k, v in inputs.items()}
            with torch.inference_mode():
                out = model.generate(
                    **inputs,
                    max_new_tokens=self.max_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                )
            return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    async def complete(self, messages: list[dict], schema: dict | None, timeout: float) -> str:
        return await asyncio.to_thread(self.generate, messages)


def check_endpoint(base_url: str | None, model: str | None) -> None:
    """The judge endpoint settings a request needs: ``judge_base_url`` (an http(s) URL with a host) and
    ``judge_model``; a one-line ValueError naming the option otherwise. Called by a real run before its first
    judgment and by every run's (and dry run's) validation, so both reject the same settings."""
    from urllib.parse import urlsplit

    if not base_url:
        raise ValueError("task_options judge_base_url is unset: the OpenAI-compatible judge needs its endpoint URL")
    parts = urlsplit(str(base_url))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"task_options judge_base_url={base_url!r} is invalid; allowed: an http:// or https:// URL with a host "
            "(e.g. http://127.0.0.1:8000/v1)"
        )
    if not model:
        raise ValueError("task_options judge_model is unset: the OpenAI-compatible judge needs the served model name")


def reachable(base_url: str, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to the URL's host and port opens within ``timeout`` (no request is sent)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def make_backend(
    backend: str,
    *,
    base_url: str | None,
    model: str | None,
    api_key_env: str,
    temperature: float,
    max_tokens: int,
    json_schema: bool,
):
    """``backend``: "openai" (any OpenAI-compatible endpoint) or "transformers" (``model`` is a path or hub id)."""
    if backend == "openai":
        return OpenAIBackend(base_url or "", model or "", api_key_env, temperature, max_tokens, json_schema)
    if backend == "transformers":
        if not model:
            raise ValueError("judge_backend=transformers needs judge_model (a local model path or hub id)")
        return TransformersBackend(model, max_tokens)
    raise ValueError(f"judge_backend={backend!r} is invalid; allowed: openai, transformers")
