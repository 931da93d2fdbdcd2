"""The GVPO response buffer: past completions per prompt, with their reward vectors and the step they were drawn at.

Keyed by a hash of the prompt's token ids (:func:`prompt_key`: the prompt content exactly as the model sees it);
bounded per prompt and in total, FIFO eviction (the oldest entry of the prompt, resp. of the whole buffer, goes
first); entries older than ``max_staleness`` steps are dropped when their prompt is next visited; an identical
completion re-drawn for the same prompt replaces its older copy. Checkpointed with :meth:`ResponseBuffer.state_dict`.
Used by :class:`varpo.trl.replay.OffPolicyGroups`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from varpo.trl.replay_config import SELECTIONS


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
