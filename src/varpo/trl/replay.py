"""GVPO off-policy groups: fresh samples mixed with historical and external responses (GVPO Thm 3.2, Fig. 4).

GVPO (Zhang et al. 2025) keeps its unique optimum π* = π_θ'·e^{R/β}/Z for *any* sampling distribution π_s whose
support covers π_θ' (Theorem 3.2): the loss (eq. 9) only needs responses y ~ π_s, their rewards and log π_θ(y) −
log π_θ'(y); π_s itself never enters (no importance ratio). Its Fig. 4 trains with groups that mix responses of
π_θold with historical responses. This module supplies such a π_s to :class:`~varpo.trl.VarpoGRPOTrainer`:

* :class:`~varpo.trl.response_buffer.ResponseBuffer` (module :mod:`varpo.trl.response_buffer`) — past completions per prompt (keyed by a hash of the prompt's token ids, i.e. the prompt
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
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

# the buffer and the option checks live in their own modules; their names stay importable from here
from varpo.trl.replay_config import SELECTIONS, check_external_column, describe, validate_config  # noqa: F401
from varpo.trl.response_buffer import Response, ResponseBuffer, prompt_key  # noqa: F401

FRESH, HISTORY, EXTERNAL = 0, 1, 2
REPLAY_FILE = "varpo_replay_{rank}.json.gz"  # checkpoint file: one response buffer per process


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
        check_external_column(a.gvpo_external_column, getattr(trainer.train_dataset, "column_names", None))
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
