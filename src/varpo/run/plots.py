"""Training curves from ``metrics.jsonl``, several runs overlaid (one colour per run).

Raw per-step values are drawn faintly, a centred moving average on top: with 8 prompts per step the per-step
reward is noisy and the trend is what matters.
"""

from __future__ import annotations

from pathlib import Path

from varpo.trl.metrics import read_metrics


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and "train_runtime" not in r]
    return [p[0] for p in points], [float(p[1]) for p in points]


def smooth(values: list[float], window: int = 9) -> list[float]:
    half = window // 2
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - half) : i + half + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def plot_runs(runs: dict[str, Path], objectives: list[str], out_dir: Path) -> list[Path]:
    """Write reward mean/std per objective, completion length and effective weights vs step; return the PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = {name: read_metrics(path) for name, path in runs.items()}
    colours = dict(zip(runs, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    figures = {
        "reward_mean.png": [(f"reward/{o}/mean", f"{o}: reward mean") for o in objectives],
        "reward_std.png": [(f"reward/{o}/std", f"{o}: reward std") for o in objectives],
        "completion_length.png": [("completions/mean_length", "completion length (tokens)")],
        "weights.png": [(f"adv/weight/{o}", f"{o}: effective weight") for o in objectives],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, panels in figures.items():
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
        for ax, (key, title) in zip(axes[0], panels, strict=True):
            for name, recs in records.items():
                x, y = series(recs, key)
                if not x:
                    continue
                ax.plot(x, y, color=colours[name], alpha=0.25, linewidth=0.8)
                ax.plot(x, smooth(y), color=colours[name], label=name, linewidth=1.8)
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        path = out_dir / filename
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
