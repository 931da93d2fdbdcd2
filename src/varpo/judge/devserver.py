"""A localhost OpenAI-compatible chat-completions server for tests and CPU examples — NOT for production judges
(serve those with vLLM or SGLang: ``vllm serve <model>``, then ``judge_base_url: http://host:8000/v1``).

It runs a real transformers model on every request (greedy, a few tokens) and turns that into the JSON object the
request's ``response_format`` JSON schema asks for, by a deterministic rule, so replies are valid, reproducible and
depend on the prompt and the judged response:

* an integer score in ``[minimum, maximum]``: ``minimum + (Σ generated token ids + crc32(name)) mod (range + 1)``;
* a boolean criterion whose description quotes a word (``Recommends 'water'.``): true iff the word occurs in the
  judged response (the text under the template's "# Response to ..." heading); other booleans: the parity of
  ``Σ generated token ids + crc32(name)``.

Fault endpoints (same protocol, under a path prefix) for resilience tests: ``/slow/v1`` (sleeps ``slow_seconds``
first), ``/stall/v1`` (sleeps 10 x ``slow_seconds``), ``/malformed/v1`` (reply text that is not JSON), ``/partial/v1`` (omits the first key), ``/error/v1`` (HTTP
500), ``/flaky/v1`` (HTTP 500 on the first attempt of each distinct request, then normal), ``/chaos/v1`` (each
distinct request gets, by a hash of its messages, one of: always 500, malformed, very slow (10 x ``slow_seconds``),
normal). ``GET /stats`` reports
request counts and the peak number of requests in flight; ``POST /reset`` clears them.

    python -m varpo.judge.devserver --model builtin:tiny --port 8011     # then judge_base_url=http://127.0.0.1:8011/v1
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
import zlib
from typing import Any

from fastapi import FastAPI, Request  # module level: the route annotations must resolve (PEP 563)
from fastapi.responses import JSONResponse

MODES = ("ok", "slow", "stall", "malformed", "partial", "error", "flaky", "chaos")
_QUOTED = re.compile(r"'([^']+)'")
_RESPONSE = re.compile(r"#\s*Response to [^\n]*\n(.*?)(?:\n#\s|\Z)", re.DOTALL)


class JudgeModel:
    """The real model behind the server: greedy generation of ``new_tokens`` tokens per request (serialised)."""

    def __init__(self, path: str, new_tokens: int = 4) -> None:
        from varpo import models

        self.model, self.tokenizer = models.load(path)
        self.model.eval()
        self.new_tokens = new_tokens
        self.lock = threading.Lock()

    def token_ids(self, text: str) -> list[int]:
        import torch

        with self.lock, torch.inference_mode():
            ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
            limit = getattr(self.model.config, "max_position_embeddings", 512) - self.new_tokens
            ids = ids[:, -limit:]
            out = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=self.new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            return out[0, ids.shape[1] :].tolist()


def judgment(schema: dict | None, ids: list[int], prompt: str) -> dict[str, Any]:
    """The deterministic reply object for a JSON schema (see the module docstring)."""
    found = _RESPONSE.search(prompt)
    response = (found.group(1) if found else prompt).lower()
    out: dict[str, Any] = {}
    for name, prop in ((schema or {}).get("properties") or {}).items():
        seed = sum(ids) + zlib.crc32(name.encode())
        if prop.get("type") == "boolean":
            quoted = _QUOTED.findall(prop.get("description", ""))
            out[name] = all(q.lower() in response for q in quoted) if quoted else seed % 2 == 0
        else:
            inner = (prop.get("properties") or {}).get("score", prop)
            low, high = int(inner.get("minimum", 1)), int(inner.get("maximum", 10))
            score = low + seed % (high - low + 1)
            out[name] = {"score": score} if prop.get("type") == "object" else score
    return out


def create_app(judge: JudgeModel, slow_seconds: float = 5.0):
    import json

    app = FastAPI()
    stats = {"in_flight": 0, "max_in_flight": 0, "requests": dict.fromkeys(MODES, 0)}
    seen: set[str] = set()

    @app.get("/stats")
    async def get_stats():
        return {k: v for k, v in stats.items()}

    @app.post("/reset")
    async def reset():
        stats.update(in_flight=0, max_in_flight=0, requests=dict.fromkeys(MODES, 0))
        seen.clear()
        return {"ok": True}

    async def handle(mode: str, request: Request):
        body = await request.json()
        stats["requests"][mode] += 1
        stats["in_flight"] += 1
        stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        try:
            digest = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()
            delay = slow_seconds
            if mode == "chaos":
                mode = ("error", "malformed", "stall", "ok")[int(digest[:8], 16) % 4]
            if mode == "stall":
                mode, delay = "slow", 10 * slow_seconds  # far beyond any sane timeout, even on a loaded machine
            if mode == "error":
                return JSONResponse({"error": {"message": "judge exploded", "type": "server_error"}}, status_code=500)
            if mode == "flaky":
                if digest not in seen:
                    seen.add(digest)
                    return JSONResponse({"error": {"message": "try again", "type": "server_error"}}, status_code=500)
            if mode == "slow":
                await asyncio.sleep(delay)
            messages = body.get("messages") or []
            prompt = "\n\n".join(str(m.get("content", "")) for m in messages)
            ids = await asyncio.to_thread(judge.token_ids, prompt)
            fmt = body.get("response_format") or {}
            schema = (fmt.get("json_schema") or {}).get("schema")
            obj = judgment(schema, ids, prompt)
            if mode == "partial" and obj:
                obj.pop(next(iter(obj)))
            content = "I think the answer is {not json" if mode == "malformed" else json.dumps(obj)
            return {
                "id": f"chatcmpl-{stats['requests'][mode]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "judge"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": len(ids), "total_tokens": len(ids)},
            }
        finally:
            stats["in_flight"] -= 1

    @app.post("/v1/chat/completions")
    async def ok(request: Request):
        return await handle("ok", request)

    @app.post("/{mode}/v1/chat/completions")
    async def faulty(mode: str, request: Request):
        if mode not in MODES:
            return JSONResponse({"error": {"message": f"unknown mode {mode}"}}, status_code=404)
        return await handle(mode, request)

    return app


class DevServer:
    """``with DevServer(model_path) as server: server.url("slow")`` — uvicorn in a daemon thread on 127.0.0.1."""

    def __init__(self, model: str, port: int = 0, slow_seconds: float = 5.0, new_tokens: int = 4) -> None:
        self.judge = JudgeModel(model, new_tokens)
        self.app = create_app(self.judge, slow_seconds)
        self.port = port
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> DevServer:
        import uvicorn

        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="varpo-judge-devserver", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("judge dev server did not start")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def url(self, mode: str = "ok") -> str:
        prefix = "" if mode == "ok" else f"/{mode}"
        return f"http://127.0.0.1:{self.port}{prefix}/v1"

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _main() -> None:  # pragma: no cover - manual use
    import argparse

    parser = argparse.ArgumentParser(description="localhost OpenAI-compatible judge for tests and CPU examples")
    parser.add_argument("--model", default="builtin:tiny", help="a local model directory, or builtin:tiny")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    args = parser.parse_args()
    model = args.model
    if model == "builtin:tiny":
        from varpo import models
        from varpo.tasks import get_task

        ds = get_task("rubric").generate(256)
        model = models.resolve(model, [p + c for p, c in zip(ds["prompt"], ds["completion"])])
    server = DevServer(model, args.port, args.slow_seconds).start()
    print(f"judge dev server: {server.url()} (fault endpoints: {', '.join(server.url(m) for m in MODES[1:])})")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    _main()
