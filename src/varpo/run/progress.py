"""A progress bar for CLI training runs that shows the per-objective reward means instead of printing every log
dict (one ~60-key line per step would bury the bar; the full record is in ``metrics.jsonl``)."""

from __future__ import annotations

from transformers.trainer_callback import ProgressCallback

_EXACT = {"loss": "loss", "completions/mean_length": "len", "mean_token_accuracy": "acc"}


def _label(key: str) -> str | None:
    if key in _EXACT:
        return _EXACT[key]
    if key.startswith("reward/") and key.endswith("/mean"):
        return key[len("reward/") : -len("/mean")]
    return None


class CompactProgress(ProgressCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        shown = {_label(k): f"{v:.3g}" for k, v in logs.items() if isinstance(v, (int, float)) and _label(k)}
        if shown:
            self.training_bar.set_postfix(shown, refresh=False)


def use_compact_progress(trainer) -> None:
    """Swap the trainer's default progress callback (if any) for :class:`CompactProgress`."""
    if trainer.args.disable_tqdm:
        return
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(CompactProgress)
