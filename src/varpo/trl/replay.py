"""GVPO off-policy groups: fresh samples mixed with historical and external responses (GVPO Thm 3.2, Fig. 4).

GVPO (Zhang et al. 2025) keeps its unique optimum π* = π_θ'·e^{R/β}/Z for *any* sampling distribution π_s whose
support covers π_θ' (Theorem 3.2): the loss (eq. 9) only needs responses y ~ π_s, their rewards and log π_θ(y) −
log π_θ'(y); π_s itself never enters (no importance ratio). Its Fig. 4 trains with groups that mix responses of
π_θold with historical responses. This module supplies such a π_s to :class:`~varpo.trl.VarpoGRPOTrainer`:

* :class:`ResponseBuffer` — past completions per prompt (keyed by a hash of the prompt's token ids, i.e. the prompt
  content exactly as the model sees it) with their reward vector and the optimizer step they were drawn at; bounded
  per prompt and in total, FIFO eviction (the oldest entry of the prompt, resp. of the whole buffer, goes first);
  entries older than ``max_staleness`` steps are dropped when their prompt is next visited; an identical completion
  re-drawn for the same prompt replaces its older copy.
* :class:`OffPolicyGroups` — group composition. A group keeps ``num_generations`` = G members: up to h historical
  responses (``gvpo_history_per_group``) selected from the buffer, one external response (``gvpo_external_column``,
  e.g. the task's gold completion) when the row has one, and G − h_g − e_g fresh samples of π_θold — so history
  *saves* generation (fewer generated sequences per step), and warm-up (empty buffer) is fresh-only.

What stays on-policy: the implicit reward R_θ = β(log π_θ − log π_θold) of every member is taken w.r.t. the current
θ_old — the buffer stores token ids and rewards, never log-probs. TRL's batch forward pass (``old_per_token_logps``,
when it computes one) runs over the assembled batch, so history is re-scored under θ_old in the same single pass as
the fresh samples; when TRL skips that pass (one optimizer step per generation batch) the loss uses
``logps.detach()``, which *is* π_θold for every row.

Rewards of historical responses are reused from the buffer (valid for deterministic graders; set
``gvpo_rescore_history=True`` to score them again, e.g. with a sampling LLM judge). External responses are always
scored by the same reward functions. Only fresh samples whose reward vector is finite enter the buffer.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

SELECTIONS = ("most_recent", "uniform", "reward_stratified")
FRESH, HISTORY, EXTERNAL = 0, 1, 2
REPLAY_FILE = "varpo_replay_{rank}.json.gz"  # checkpoint file: one response buffer per process


def prompt_key(prompt_ids: Sequence[int]) -> str:
    """Buffer key of a prompt: blake2b of its token ids (stable across processes and resumes)."""
    data = ",".join(str(int(i)) for i in prompt_ids).encode()
    return hashlib.blake2b(data, digest_size=12).hexdigest()


@dataclass(frozen=True)
class Response:
    """One buffered completion: token ids, reward vector ``[K]``, optimizer step drawn at, insertion serial."""

    ids: tuple[int, ...]
    rewards: tuple[float, ...]
    step: int
    serial: int


class ResponseBuffer:
    """Per-prompt FIFO of past completions, at most ``per_prompt`` per prompt and ``total`` overall.

    ``select`` never returns more than it holds and never mutates rewards; all operations are O(entries of one
    prompt) except total-cap eviction, which is O(1) (a dict in insertion order tracks the globally oldest entry).
    """

    def __init__(self, per_prompt: int, total: int) -> None:
        if per_prompt < 1 or total < 1:
            raise ValueError(f"buffer caps must be >= 1 (got per_prompt={per_prompt}, total={total})")
        self.per_prompt = per_prompt
        self.total = total
        self._data: dict[str, list[Response]] = {}
        self._alive: dict[int, str] = {}  # serial -> key, insertion order = age order
        self._serial = 0

    def __len__(self) -> int:
        return len(self._alive)

    @property
    def num_prompts(self) -> int:
        return len(self._data)

    def entries(self, key: str) -> list[Response]:
        return list(self._data.get(key, ()))

    def add(self, key: str, ids: Sequence[int], rewards: Sequence[float], step: int) -> None:
        ids = tuple(int(i) for i in ids)
        items = self._data.setdefault(key, [])
        for old in [e for e in items if e.ids == ids]:  # re-drawn: keep only the newest copy
            self._remove(key, old)
        items = self._data.setdefault(key, [])
        entry = Response(ids, tuple(float(r) for r in rewards), int(step), self._serial)
        self._serial += 1
        items.append(entry)
        self._alive[entry.serial] = key
        while len(items) > self.per_prompt:
            self._remove(key, items[0])
        while len(self._alive) > self.total:
            serial, oldest_key = next(iter(self._alive.items()))
            self._remove(oldest_key, next(e for e in self._data[oldest_key] if e.serial == serial))

    def _remove(self, key: str, entry: Response) -> None:
        items = self._data[key]
        items.remove(entry)
        del self._alive[entry.serial]
        if not items:
            del self._data[key]

    def prune(self, key: str, step: int, max_staleness: int | None) -> None:
        """Drop the prompt's entries older than ``max_staleness`` steps (they can never be selected again)."""
        if max_staleness is None:
            return
        for entry in [e for e in self._data.get(key, ()) if step - e.step > max_staleness]:
            self._remove(key, entry)

    def select(
        self,
        key: str,
        n: int,
        step: int,
        rule: str = "most_recent",
        max_staleness: int | None = None,
        weights: Sequence[float] | None = None,
        seed: int = 0,
    ) -> list[Response]:
        """Up to ``n`` entries of prompt ``key`` drawn before ``step`` and at most ``max_staleness`` steps old.

        * ``most_recent``: the n newest.
        * ``uniform``: n without replacement, uniformly; the draw is a function of (seed, step, key) only, so a
          resumed run selects the same responses.
        * ``reward_stratified``: sort by the weighted reward Σ_k w_k r_k (ties: older first) and take the entries at
          ranks ⌊(j + ½)·m/n⌋, j < n (m candidates): evenly spread over the reward range, which keeps the
          within-group reward spread that the GVPO weights (R_i − R̄) need.
        """
        if rule not in SELECTIONS:
            raise ValueError(f"selection rule {rule!r} is invalid; allowed: {' | '.join(SELECTIONS)}")
        self.prune(key, step, max_staleness)
        candidates = [e for e in self._data.get(key, ()) if e.step < step]
        if n <= 0 or not candidates:
            return []
        if len(candidates) <= n:
            return candidates
        if rule == "most_recent":
            return candidates[-n:]
        if rule == "uniform":
            digest = hashlib.blake2b(f"{seed}:{step}:{key}".encode(), digest_size=8).digest()
            picked = random.Random(int.from_bytes(digest, "big")).sample(range(len(candidates)), n)
            return [candidates[i] for i in sorted(picked)]
        w = list(weights) if weights is not None else [1.0] * len(candidates[0].rewards)
        ranked = sorted(candidates, key=lambda e: (sum(wk * rk for wk, rk in zip(w, e.rewards, strict=True)), e.serial))
        m = len(ranked)
        return [ranked[int((j + 0.5) * m / n)] for j in range(n)]

    def state_dict(self) -> dict:
        entries = []
        for serial, key in self._alive.items():
            e = next(x for x in self._data[key] if x.serial == serial)
            entries.append([key, list(e.ids), list(e.rewards), e.step, e.serial])
        return {"per_prompt": self.per_prompt, "total": self.total, "serial": self._serial, "entries": entries}

    def load_state_dict(self, state: dict, num_rewards: int | None = None) -> None:
        """Restore entries (in their age order); the current caps apply (a smaller cap evicts the oldest).

        Checked first (a ValueError saying what is wrong, instead of a KeyError at the first eviction or a zip
        error at the first selection): serials are unique, and every reward vector has the same length —
        ``num_rewards`` (the run's K) when given, since a resumed run whose task changed (``--override``) has K
        reward functions that the buffered vectors do not match."""
        self._data, self._alive = {}, {}
        given = num_rewards is not None
        for key, ids, rewards, step, serial in state["entries"]:
            entry = Response(tuple(int(i) for i in ids), tuple(float(r) for r in rewards), int(step), int(serial))
            if entry.serial in self._alive:
                raise ValueError(
                    f"duplicate serial {entry.serial} (entries of prompts {self._alive[entry.serial]} and {key})"
                )
            k = num_rewards if num_rewards is not None else len(entry.rewards)
            if len(entry.rewards) != k:
                raise ValueError(
                    f"a buffered reward vector has {len(entry.rewards)} components, "
                    + (f"this run has K={k} reward functions" if given else f"others have {k}")
                    + " (was the task changed on --resume?); delete the file to start with an empty buffer"
                )
            num_rewards = k
            self._data.setdefault(key, []).append(entry)
            self._alive[entry.serial] = key
        self._serial = int(state["serial"])
        for key in list(self._data):
            while key in self._data and len(self._data[key]) > self.per_prompt:
                self._remove(key, self._data[key][0])
        while len(self._alive) > self.total:
            serial, key = next(iter(self._alive.items()))
            self._remove(key, next(e for e in self._data[key] if e.serial == serial))


@dataclass
class Composition:
    """How one local generation batch was assembled; per-row lists have the batch's length B."""

    keys: list[str]  # prompt key per row
    source: list[int]  # FRESH | HISTORY | EXTERNAL per row
    age: list[int]  # steps since drawn (0 for fresh and external)
    buffered: list[tuple[float, ...] | None]  # reused reward vector (history rows, unless re-scored)
    ids: list[list[int]]  # completion ids per row
    step: int


def external_text(value: Any, column: str) -> str | None:
    """The text of an external completion cell: a string, or chat messages (the assistant contents joined).

    Missing/empty cells give None (the group is then composed without an external response); any other type is
    refused with a one-line error naming the column.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(
        isinstance(m, dict) and isinstance(m.get("content"), str) for m in value
    ):
        parts = [m["content"] for m in value if m.get("role", "assistant") == "assistant"]
        return "".join(parts) or None
    raise ValueError(
        f"gvpo_external_column={column!r}: a cell of type {type(value).__name__} is not a completion "
        "(expected text or a list of assistant messages)"
    )


class OffPolicyGroups:
    """Composes fresh + historical + external groups, scores what needs scoring, and fills the buffer.

    The trainer calls, per training generation batch: :meth:`compose` (from ``_generate_single_turn``, with a
    ``generate`` callback for the fresh rows), :meth:`score` (from ``_calculate_rewards``) and :meth:`record` (after
    the global reward matrix is known). Evaluation batches never go through it.
    """

    def __init__(
        self,
        *,
        group_size: int,
        history: int,
        selection: str,
        max_staleness: int | None,
        per_prompt: int,
        total: int,
        external_column: str | None,
        rescore: bool,
        weights: Sequence[float] | None,
        seed: int,
        encode: Callable[[str], list[int]],
        eos_token_id: int | None,
        max_completion_length: int | None,
    ) -> None:
        self.group_size = group_size
        self.history = history
        self.selection = selection
        self.max_staleness = max_staleness
        self.external_column = external_column
        self.rescore = rescore
        self.weights = list(weights) if weights is not None else None
        self.seed = seed
        self.encode = encode
        self.eos_token_id = eos_token_id
        self.max_completion_length = max_completion_length
        self.buffer = ResponseBuffer(per_prompt, total)
        self.pending: Composition | None = None
        self.generated_tokens_total = 0

    @classmethod
    def from_trainer(cls, trainer) -> OffPolicyGroups | None:
        """Built from the trainer's ``VarpoGRPOConfig``; None when neither history nor external responses are on."""
        a = trainer.args
        if a.gvpo_history_per_group == 0 and a.gvpo_external_column is None:
            return None
        unsupported = [
            name
            for name, on in (
                ("tools", bool(getattr(trainer, "tools", None))),
                ("rollout_func", getattr(trainer, "rollout_func", None) is not None),
                ("environment_factory", getattr(trainer, "environment_factories", None) is not None),
            )
            if on
        ]
        if unsupported:
            raise ValueError(
                f"gvpo_history_per_group/gvpo_external_column do not support {', '.join(unsupported)} yet "
                "(a buffered multi-turn completion would replay stale tool results)"
            )
        dataset = trainer.train_dataset
        names = getattr(dataset, "column_names", None)
        if a.gvpo_external_column is not None and names is not None and a.gvpo_external_column not in names:
            raise ValueError(
                f"gvpo_external_column={a.gvpo_external_column!r} is not a column of the training data "
                f"(columns: {', '.join(names)})"
            )
        tok = trainer._tokenizer

        def encode(text: str) -> list[int]:
            return list(tok(text=text, add_special_tokens=False)["input_ids"])

        return cls(
            group_size=a.num_generations,
            history=a.gvpo_history_per_group,
            selection=a.gvpo_history_selection,
            max_staleness=a.gvpo_max_staleness,
            per_prompt=a.gvpo_buffer_per_prompt,
            total=a.gvpo_buffer_total,
            external_column=a.gvpo_external_column,
            rescore=a.gvpo_rescore_history,
            weights=a.reward_weights,
            seed=a.seed,
            encode=encode,
            eos_token_id=tok.eos_token_id,
            max_completion_length=a.max_completion_length,
        )

    # ------------------------------------------------------------------------------------------------------------

    def _external_ids(self, row: dict) -> list[int] | None:
        text = external_text(row.get(self.external_column), self.external_column)
        if text is None:
            return None
        ids = self.encode(text)
        if self.eos_token_id is not None:
            ids = ids + [self.eos_token_id]  # a finished answer, as the model's own completions end
        ids = ids[: self.max_completion_length] if self.max_completion_length else ids
        return ids or None  # nothing to train on (TRL also needs >= 1 token per completion)

    def compose(self, prompt_ids: list[list[int]], rows: list[dict] | None, step: int, generate) -> tuple:
        """Assemble the completions of one local batch (B rows, G consecutive rows per prompt).

        ``generate(prompt_ids_subset) -> (completion_ids, logprobs | None)`` produces the fresh rows. Returns
        ``(completion_ids [B lists], logprobs [B lists] | None)`` in the batch's row order: in each group the fresh
        samples come first, then the historical, then the external response. Sampling log-probs of non-fresh rows
        are NaN (they were not sampled by this policy).
        """
        g = self.group_size
        b = len(prompt_ids)
        if b % g:
            raise RuntimeError(f"off-policy gvpo needs whole groups per process (batch {b}, num_generations {g})")
        keys, plan = [], []  # plan: per group, list of (source, ids, rewards|None, step)
        for start in range(0, b, g):
            first = list(prompt_ids[start])
            if any(list(prompt_ids[start + j]) != first for j in range(1, g)):
                raise RuntimeError(f"rows {start}..{start + g - 1} of a group hold different prompts")
            key = prompt_key(first)
            fill = [
                (HISTORY, list(e.ids), e.rewards, e.step)
                for e in self.buffer.select(
                    key, self.history, step, self.selection, self.max_staleness, self.weights, self.seed
                )
            ]
            if self.external_column is not None and rows is not None:
                ext = self._external_ids(rows[start])
                if ext is not None:
                    fill.append((EXTERNAL, ext, None, step))
            keys += [key] * g
            plan.append(fill)
        fresh_rows = [start + j for i, start in enumerate(range(0, b, g)) for j in range(g - len(plan[i]))]
        fresh_ids, fresh_logps = generate([prompt_ids[i] for i in fresh_rows]) if fresh_rows else ([], None)
        fresh_ids = [list(x) for x in fresh_ids]
        ids, logps, source, age, buffered = [], [], [], [], []
        it = iter(range(len(fresh_rows)))
        for fill in plan:
            for _ in range(g - len(fill)):
                k = next(it)
                ids.append(fresh_ids[k])
                logps.append(list(fresh_logps[k]) if fresh_logps is not None else None)
                source.append(FRESH)
                age.append(0)
                buffered.append(None)
            for src, fids, rewards, drawn in fill:
                ids.append(fids)
                logps.append([math.nan] * len(fids))
                source.append(src)
                age.append(step - drawn)
                buffered.append(rewards if (src == HISTORY and not self.rescore) else None)
        self.generated_tokens_total += sum(len(x) for x in fresh_ids)
        self.pending = Composition(keys, source, age, buffered, ids, step)
        return ids, (logps if fresh_logps is not None else None)

    def score(
        self, score_fn, inputs, prompts, completions, completion_ids_list, *, gather, num_processes: int, device=None
    ):
        """The global reward matrix ``[N, K]`` of the composed batch, reusing buffered rewards of history rows.

        ``score_fn(inputs, prompts, completions, completion_ids)`` is TRL's ``_calculate_rewards`` (it gathers
        over processes). One process: only the rows that need scoring are passed to it. Several processes (whose
        reused-row counts differ, while TRL's gather needs equal sizes): every row is scored, then the buffered
        rewards overwrite the history rows, gathered so every process holds the same matrix.
        """
        comp = self.pending
        reuse = [i for i, r in enumerate(comp.buffered) if r is not None]
        if not reuse:
            return score_fn(inputs, prompts, completions, completion_ids_list)
        if num_processes == 1:
            todo = [i for i, r in enumerate(comp.buffered) if r is None]
            k = len(comp.buffered[reuse[0]])
            if todo:
                part = score_fn(
                    [inputs[i] for i in todo],
                    [prompts[i] for i in todo],
                    [completions[i] for i in todo],
                    [completion_ids_list[i] for i in todo],
                )
                out = part.new_full((len(prompts), part.shape[1]), math.nan)
                out[todo] = part
            else:
                out = torch.full((len(prompts), k), math.nan, device=device)
            out[reuse] = torch.tensor([comp.buffered[i] for i in reuse], dtype=out.dtype, device=out.device)
            return out
        full = score_fn(inputs, prompts, completions, completion_ids_list)
        k = full.shape[1]
        local = full.new_full((len(prompts), k + 1), 0.0)
        for i in reuse:
            local[i, :k] = torch.tensor(comp.buffered[i], dtype=full.dtype)
            local[i, k] = 1.0
        every = gather(local)
        take = every[:, k] > 0
        full[take] = every[take, :k]
        return full

    def record(self, rewards: torch.Tensor) -> dict[str, float]:
        """Add this batch's fresh samples (finite reward vectors only) to the buffer; return the batch metrics.

        ``rewards``: this process's rows of the reward matrix ``[B, K]``. Metrics (names under ``offpolicy/``):
        ``share_history``/``share_external`` (of the batch's samples), ``age_mean`` (steps, history rows),
        ``reward_fresh``/``reward_history``/``reward_external`` (mean weighted reward Σ_k w_k r_k, nan-aware),
        ``generated_tokens`` (this batch, fresh rows), ``generated_tokens_total``, ``reused_tokens`` (tokens of
        non-fresh rows: generation the batch did not run), ``buffer_size``, ``buffer_prompts``.
        """
        comp, self.pending = self.pending, None
        r = rewards.detach().to("cpu", torch.float64)
        w = torch.tensor(self.weights if self.weights is not None else [1.0] * r.shape[1], dtype=torch.float64)
        scalar = (r * w).sum(1)  # NaN if a component is missing
        source = torch.tensor(comp.source)
        for i in (source == FRESH).nonzero().flatten().tolist():
            if bool(torch.isfinite(r[i]).all()):
                self.buffer.add(comp.keys[i], comp.ids[i], r[i].tolist(), comp.step)
        lengths = torch.tensor([len(x) for x in comp.ids], dtype=torch.float64)
        fresh = source == FRESH
        metrics = {
            "offpolicy/share_history": float((source == HISTORY).double().mean()),
            "offpolicy/share_external": float((source == EXTERNAL).double().mean()),
            "offpolicy/generated_tokens": float(lengths[fresh].sum()),
            "offpolicy/generated_tokens_total": float(self.generated_tokens_total),
            "offpolicy/reused_tokens": float(lengths[~fresh].sum()),
            "offpolicy/buffer_size": float(len(self.buffer)),
            "offpolicy/buffer_prompts": float(self.buffer.num_prompts),
        }
        for name, code in (("fresh", FRESH), ("history", HISTORY), ("external", EXTERNAL)):
            sel = source == code
            if bool(sel.any()):
                metrics[f"offpolicy/reward_{name}"] = float(torch.nanmean(scalar[sel]))
        if bool((source == HISTORY).any()):
            metrics["offpolicy/age_mean"] = float(torch.tensor(comp.age, dtype=torch.float64)[source == HISTORY].mean())
        return metrics

    # ------------------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"buffer": self.buffer.state_dict(), "generated_tokens_total": self.generated_tokens_total}

    def load_state_dict(self, state: dict, num_rewards: int | None = None) -> None:
        self.buffer.load_state_dict(state["buffer"], num_rewards)
        self.generated_tokens_total = int(state.get("generated_tokens_total", 0))

    def save(self, path: str) -> None:
        """Write the state atomically (a crash mid-write leaves the previous file or none, never a torn one)."""
        tmp = f"{path}.tmp"
        with gzip.open(tmp, "wt") as f:
            json.dump(self.state_dict(), f)
        os.replace(tmp, path)

    def load(self, path: str, num_rewards: int | None = None) -> None:
        """Restore a saved state; anything wrong with the file is a one-line ValueError naming it."""
        try:
            with gzip.open(path, "rt") as f:
                state = json.load(f)
            self.load_state_dict(state, num_rewards)
        except (OSError, EOFError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: unreadable gvpo response buffer ({type(err).__name__}: {err})") from None


def describe(cfg, columns: Sequence[str] | None = None, num_prompts: int | None = None) -> str:
    """One line for ``varpo train --dry-run``; refuses an external column that the training data lacks, and says
    when history can never be used (a prompt recurs only every ⌈prompts / prompts-per-generation⌉ generations)."""
    ext = cfg.gvpo_external_column
    if ext is not None and columns is not None and ext not in columns:
        raise ValueError(
            f"gvpo_external_column={ext!r} is not a column of the training data (columns: {', '.join(columns)})"
        )
    h, g = cfg.gvpo_history_per_group, cfg.num_generations
    parts = [f"{g - h - (ext is not None)}+ fresh"]
    if h:
        stale = "no limit" if cfg.gvpo_max_staleness is None else f"<= {cfg.gvpo_max_staleness} steps"
        reuse = "re-scored" if cfg.gvpo_rescore_history else "rewards reused"
        parts.append(f"up to {h} historical ({cfg.gvpo_history_selection}, age {stale}, {reuse})")
    if ext is not None:
        parts.append(f"1 external from column {ext!r}")
    caps = f"buffer {cfg.gvpo_buffer_per_prompt}/prompt, {cfg.gvpo_buffer_total} total"
    line = f"groups of {g}: " + " + ".join(parts) + (f"; {caps}" if h else "")
    per_generation = (cfg.generation_batch_size or 0) // g
    if h and num_prompts and per_generation:
        every = math.ceil(num_prompts / per_generation) * cfg.steps_per_generation  # optimizer steps between visits
        if cfg.max_steps > 0 and every >= cfg.max_steps:
            line += f"; NOTE: a prompt recurs every {every} steps >= max_steps={cfg.max_steps}: no history will be used"
        elif cfg.gvpo_max_staleness is not None and every > cfg.gvpo_max_staleness:
            line += f"; NOTE: a prompt recurs every {every} steps > gvpo_max_staleness: history is always too stale"
        else:
            line += f"; a prompt recurs every {every} steps"
    return line


# ----------------------------------------------------------------------------------------------------------------
# Config validation (called from VarpoGRPOConfig.__post_init__; same one-line message format)
# ----------------------------------------------------------------------------------------------------------------

_DEFAULTS = {
    "gvpo_history_selection": "most_recent",
    "gvpo_max_staleness": None,
    "gvpo_buffer_per_prompt": 16,
    "gvpo_buffer_total": 8192,
    "gvpo_rescore_history": False,
}


def validate_config(cfg) -> None:
    """Refuse invalid off-policy options; ``cfg`` is a ``VarpoGRPOConfig`` (before TRL's own checks)."""

    def fail(name: str, allowed: str) -> None:
        raise ValueError(f"{name}={getattr(cfg, name)!r} is invalid; allowed: {allowed}")

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    h, ext = cfg.gvpo_history_per_group, cfg.gvpo_external_column
    if not is_int(h) or h < 0:
        fail("gvpo_history_per_group", "an int >= 0")
    if ext is not None and (not isinstance(ext, str) or not ext or ext == "prompt"):
        fail("gvpo_external_column", "a dataset column name other than 'prompt', or null")
    if cfg.gvpo_history_selection not in SELECTIONS:
        fail("gvpo_history_selection", " | ".join(SELECTIONS))
    if cfg.gvpo_max_staleness is not None and (not is_int(cfg.gvpo_max_staleness) or cfg.gvpo_max_staleness < 1):
        fail("gvpo_max_staleness", "an int >= 1 (optimizer steps) or null (no limit)")
    for name in ("gvpo_buffer_per_prompt", "gvpo_buffer_total"):
        if not is_int(getattr(cfg, name)) or getattr(cfg, name) < 1:
            fail(name, "an int >= 1")
    if not isinstance(cfg.gvpo_rescore_history, bool):
        fail("gvpo_rescore_history", "true | false")
    on = h > 0 or ext is not None
    if on and cfg.policy_loss != "gvpo":
        name = "gvpo_history_per_group" if h > 0 else "gvpo_external_column"
        fail(
            name,
            f"{0 if h > 0 else None} with policy_loss={cfg.policy_loss!r} (its importance ratio needs π_s, unknown "
            "for historical/external responses; only gvpo is valid for any π_s, GVPO Thm 3.2)",
        )
    if h == 0:
        for name, default in _DEFAULTS.items():
            if getattr(cfg, name) != default:
                fail(name, f"its default {default!r} (it is only used with gvpo_history_per_group > 0)")
    if on:
        slots = h + (ext is not None)
        if slots > cfg.num_generations - 1:
            fail(
                "gvpo_history_per_group",
                f"at most num_generations - 1{' - 1 (the external slot)' if ext is not None else ''} = "
                f"{cfg.num_generations - 1 - (ext is not None)} (every group keeps >= 1 fresh sample)",
            )
        if getattr(cfg, "use_vllm", False):
            fail(
                "use_vllm",
                "False with gvpo_history_per_group/gvpo_external_column (vLLM generation of a partial "
                "batch is not wired yet)",
            )
