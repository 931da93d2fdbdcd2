"""Training progress for CLI runs: a compact progress bar on a terminal, one line per interval in a log file.

On a terminal the bar shows the per-objective reward means instead of printing every log dict (one ~60-key line per
step would bury the bar; the full record is in ``metrics.jsonl``). When stderr is not a terminal (a sweep's
``run.log``, CI, ``nohup``) a redrawn bar becomes one carriage-return-joined line per step, so there
:class:`LineProgress` prints ``step 20/80 (25%) 10 s: loss=..., alpha=...`` about ten times per run instead, and
the library progress bars (weight loading, dataset maps) are switched off.
"""

from __future__ import annotations

import sys
import time

from transformers.trainer_callback import ProgressCallback, TrainerCallback

_EXACT = {"loss": "loss", "completions/mean_length": "len", "mean_token_accuracy": "acc"}
LINES_PER_RUN = 10


def _label(key: str) -> str | None:
    if key in _EXACT:
        return _EXACT[key]
    if key.startswith("reward/") and key.endswith("/mean"):
        return key[len("reward/") : -len("/mean")]
    return None


def _compact(logs: dict) -> dict[str, str]:
    return {_label(k): f"{v:.3g}" for k, v in logs.items() if isinstance(v, (int, float)) and _label(k)}


class CompactProgress(ProgressCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        shown = _compact(logs)
        if shown:
            self.training_bar.set_postfix(shown, refresh=False)


class LineProgress(TrainerCallback):
    """One line every ``max_steps / LINES_PER_RUN`` steps (and at the last), with that step's compact log values."""

    def __init__(self, stream=None) -> None:
        self.stream = stream
        self.shown: dict[str, str] = {}
        self.due: int | None = None
        self.start = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        total = max(int(state.max_steps or 0), 1)
        step = int(state.global_step)
        if state.is_world_process_zero and (step % max(total // LINES_PER_RUN, 1) == 0 or step == total):
            self.due = step  # printed by the on_log that follows for this step (the Trainer logs after on_step_end)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.shown.update(_compact(logs))
        if self.due is not None and int(state.global_step) == self.due:
            self._print(state)

    def on_train_end(self, args, state, control, **kwargs):
        if self.due is not None:  # a due step with no log (logging_steps not aligned): print the latest values
            self._print(state)

    def _print(self, state) -> None:
        total = max(int(state.max_steps or 0), 1)
        line = f"step {self.due}/{total} ({100 * self.due // total}%) {time.perf_counter() - self.start:.0f} s"
        values = ", ".join(f"{k}={v}" for k, v in self.shown.items())
        print(f"{line}: {values}" if values else line, file=self.stream or sys.stdout, flush=True)
        self.due = None


def interactive(stream=None) -> bool:
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def quiet_library_bars(*, tty: bool | None = None) -> None:
    """Off a terminal, switch off transformers' and datasets' own tqdm bars (weight loading, map/filter): in a log
    file each redraw is another chunk of one endless line. Call before loading models or data."""
    if interactive() if tty is None else tty:
        return
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()


def use_compact_progress(trainer, *, tty: bool | None = None) -> None:
    """Swap the trainer's default progress callback (if any) for :class:`CompactProgress` on a terminal, or for
    :class:`LineProgress` (and no library bars) when stderr is not one."""
    if trainer.args.disable_tqdm:
        return
    trainer.remove_callback(ProgressCallback)
    if interactive() if tty is None else tty:
        trainer.add_callback(CompactProgress)
    else:
        trainer.add_callback(LineProgress())
