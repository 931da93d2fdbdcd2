"""Invalid task options are a one-line error with exit status 2 (not a traceback with exit 1)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from varpo.cli import app

REPO = Path(__file__).resolve().parents[2]


def test_unknown_task_option_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(REPO / "configs/demo.yaml"),
            "task=math",
            "task_options={max_token: 5}",
            f"output_dir={tmp_path}",
            "--dry-run",
        ],
    )
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and line.startswith("error: task_options={'max_token': 5} is invalid")
    assert "did you mean: max_token -> max_tokens?" in line
