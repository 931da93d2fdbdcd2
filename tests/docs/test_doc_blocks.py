"""Every fenced code block in README.md and docs/*.md is executed (or parsed) by this test.

Discovery is generic (new pages and blocks are picked up automatically); the only way to exempt a block is an
explicit, justified annotation on the line before its opening fence::

    <!-- doc-test: skip: <why this block cannot run here> -->
    <!-- doc-test: partial: <why> -->   (bash: run the commands it can, skip the others)

(the annotation may sit among other HTML comments directly above the fence).

Rules per block language:

* ``python`` — a page's runnable python blocks run in order in **one fresh interpreter per page** (a page is read
  top to bottom; cwd: a temporary directory, offline, one thread, the session's private ``VARPO_CACHE``); each
  block's test passes when its own block ran without error;
* ``bash`` / ``sh`` — every command must be a varpo command this harness knows how to run safely: ``varpo train``
  and ``varpo sweep`` get ``--dry-run`` (if missing), ``varpo --help``/``python -m varpo --help`` run as is; any
  other command (``pip install``, a GPU script, ``varpo demo``) needs the skip annotation with a reason. They run
  in this process through the ``varpo`` click app (the same code path as the console script, without a fresh
  interpreter's import cost per command);
* ``yaml`` / ``toml`` / ``json`` — parsed; ``text`` / no language — output shown to the reader, not executed.

Blocks are run with the repository as cwd for bash (configs/ paths resolve) and outputs go to a temporary
directory (``output_dir``/``--out`` are redirected), so the docs never write into the checkout. Training-sized
commands only ever run as ``--dry-run``; the python examples use toy sizes (seconds), so the whole harness stays
well under a minute of CPU.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib
import yaml
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP = re.compile(r"<!--\s*doc-test:\s*(?P<mode>skip|partial):\s*(?P<why>\S.*?)\s*-->")
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)\s*$")
RUNNABLE = ("varpo train", "varpo sweep", "varpo --help", "python -m varpo --help")
DISPLAY = ("", "text", "console", "output")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    text: str
    skip: str | None
    partial: str | None = None

    @property
    def id(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"


def discover(pages=PAGES) -> list[Block]:
    blocks = []
    for page in pages:
        lines = page.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if not m:
                i += 1
                continue
            start, indent = i, len(m["indent"])
            j = i + 1
            while j < len(lines) and not re.match(rf"^ {{{indent}}}```\s*$", lines[j]):
                j += 1
            text = "\n".join(line[indent:] for line in lines[i + 1 : j])
            k, found = start - 1, None
            while k >= 0 and lines[k].strip().startswith("<!--") and found is None:
                found = SKIP.search(lines[k])
                k -= 1
            skip = found["why"] if found and found["mode"] == "skip" else None
            partial = found["why"] if found and found["mode"] == "partial" else None
            blocks.append(Block(page, start + 1, m["lang"].lower(), text, skip, partial))
            i = j + 1
    return blocks


BLOCKS = discover()


def commands(script: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", script)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(re.sub(r"\s+#.*$", "", line))
    return out


def _command_core(cmd: str) -> str:
    words = shlex.split(cmd, comments=True)
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words = words[1:]  # leading environment assignments
    return " ".join(words)


def runnable(cmd: str) -> bool:
    return _command_core(cmd).startswith(RUNNABLE)


def rewrite(cmd: str, tmp: Path) -> str:
    """Make a varpo command safe to run here: --dry-run, outputs under ``tmp``."""
    core = _command_core(cmd)
    if core.startswith(("varpo train", "varpo sweep")):
        if "--dry-run" not in cmd:
            cmd += " --dry-run"
        cmd += f" output_dir={tmp}/out" if core.startswith("varpo train") else f" --out {tmp}/sweep"
    return cmd


def env_for(cache: Path) -> dict[str, str]:
    src = str(ROOT / "src")
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "VARPO_CACHE": str(cache),
        "OMP_NUM_THREADS": "1",  # tiny models: a second thread gains nothing and thrashes a shared machine
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        "PYTHONWARNINGS": "ignore",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }


# Runs a page's python blocks in order in one interpreter; after each block it appends "ok <line>" to the status
# file, or "fail <line>" and the traceback, and stops (later blocks read the earlier ones' names).
_PAGE_RUNNER = """
import __main__, json as _json, sys as _sys, traceback as _traceback
_blocks, _status = _json.load(open(_sys.argv[1])), _sys.argv[2]
for _line, _name, _text in _blocks:  # in __main__'s own namespace, as `python page.py` would run them
    try:
        exec(compile(_text, _name, "exec"), __main__.__dict__)
    except BaseException:
        open(_status, "a").write(f"fail {_line}\\n" + _traceback.format_exc())
        raise SystemExit(1)
    open(_status, "a").write(f"ok {_line}\\n")
"""


@pytest.fixture(scope="session")
def docs_cache(private_varpo_cache) -> Path:
    """One varpo cache for every block of the session (a tiny model built by one block is reused by the next)."""
    return Path(os.environ.get("VARPO_DOCS_CACHE", str(private_varpo_cache)))


@pytest.fixture(scope="session")
def page_runs(docs_cache, tmp_path_factory):
    """``page -> (status text, stderr)`` of the page's python blocks, each page run once, on first request."""
    runs: dict[Path, tuple[str, str]] = {}

    def run(page: Path) -> tuple[str, str]:
        if page not in runs:
            tmp = tmp_path_factory.mktemp("doc-page")
            blocks = [[b.line, b.id, b.text] for b in BLOCKS if b.page == page and b.lang == "python" and not b.skip]
            (tmp / "blocks.json").write_text(json.dumps(blocks))
            status = tmp / "status.txt"
            proc = subprocess.run(
                [sys.executable, "-c", _PAGE_RUNNER, str(tmp / "blocks.json"), str(status)],
                cwd=tmp,
                env=env_for(docs_cache),
                capture_output=True,
                text=True,
                timeout=400,
            )
            runs[page] = (status.read_text() if status.exists() else "", proc.stderr[-3000:])
        return runs[page]

    return run


def test_blocks_are_discovered():
    assert len(BLOCKS) >= 20 and {b.lang for b in BLOCKS} >= {"python", "bash"}
    # the parser sees annotations and nested fences correctly
    assert all(b.text.count("```") == 0 for b in BLOCKS)


def test_page_runner_reports_the_failing_block(tmp_path, docs_cache):
    """The harness can fail: a block that raises is reported as failed, and later blocks are not run."""
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\n```\n\n```python\nraise ValueError(x)\n```\n\n```python\ny = 2\n```\n")
    blocks = [[b.line, b.id, b.text] for b in discover([page]) if b.lang == "python"]
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    proc = subprocess.run(
        [sys.executable, "-c", _PAGE_RUNNER, str(tmp_path / "blocks.json"), str(tmp_path / "status.txt")],
        env=env_for(docs_cache),
        capture_output=True,
        text=True,
    )
    status = (tmp_path / "status.txt").read_text()
    assert proc.returncode == 1 and status.startswith("ok 1\nfail 5\n") and "ValueError: 1" in status
    assert "ok 9" not in status


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_doc_block(block: Block, tmp_path, docs_cache, page_runs, monkeypatch):
    if block.skip is not None:
        assert len(block.skip) >= 15, f"{block.id}: a skip annotation needs a real reason, got {block.skip!r}"
        return
    lang = block.lang
    if lang in DISPLAY:
        return
    if lang == "yaml":
        yaml.safe_load(block.text)
        return
    if lang == "toml":
        tomllib.loads(block.text)
        return
    if lang == "json":
        json.loads(block.text)
        return
    if lang == "python":
        status, stderr = page_runs(block.page)
        if f"ok {block.line}\n" in status:
            return
        failed = re.search(r"^fail (\d+)$", status, re.M)
        if failed and int(failed[1]) == block.line:
            pytest.fail(f"{block.id} failed:\n{status[failed.end() :][-3000:]}")
        where = f"block at line {failed[1]} of the page failed first" if failed else f"the page did not run:\n{stderr}"
        pytest.fail(f"{block.id} did not run: {where}")
    assert lang in ("bash", "sh"), f"{block.id}: unknown block language {lang!r} (annotate or tag it text)"
    cmds = commands(block.text)
    if block.partial is not None:
        assert len(block.partial) >= 15, f"{block.id}: a partial annotation needs a real reason"
        cmds = [c for c in cmds if runnable(c)]
        assert cmds, f"{block.id}: 'partial' but no runnable command; use skip"
    bad = [c for c in cmds if not runnable(c)]
    assert not bad, (
        f"{block.id}: {bad[0]!r} cannot run in the doc test; make it a varpo train/sweep command or annotate the "
        "block with <!-- doc-test: skip: <reason> -->"
    )
    for key, value in env_for(docs_cache).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(ROOT)
    for cmd in cmds:
        args, env = varpo_args(rewrite(cmd, tmp_path))
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        if args[:1] == ["train"] and "--resume" in args:
            _seed_run(args)  # a documented --resume continues an earlier run: give its dry run one to check
        result = run_varpo(args)
        assert result.exit_code == 0, f"{block.id}: {cmd!r} failed:\n{result.output[-3000:]}"


def _seed_run(args: list[str]) -> None:
    """Leave in the (temporary) output_dir what a real ``varpo train`` of this config would have, so that a
    documented ``--resume`` line meets the run it continues (``--dry-run`` checks it like a real run)."""
    from tests.engine.test_run_safety import fake_run
    from varpo.run import spec as spec_mod

    overrides = [a for a in args[2:] if "=" in a and not a.startswith("-")]
    resolved = spec_mod.load_config(Path(args[1]), overrides)
    fake_run(Path(resolved.train["output_dir"]), resolved)


def varpo_args(cmd: str) -> tuple[list[str], dict[str, str]]:
    """The arguments after ``varpo`` / ``python -m varpo`` (shell words, ``$VAR`` expanded) and the leading
    ``NAME=value`` environment assignments of a command line."""
    words = [os.path.expandvars(w) for w in shlex.split(cmd, comments=True)]
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    prefix = 3 if words[:3] == ["python", "-m", "varpo"] else 1
    assert words[:prefix] in (["varpo"], ["python", "-m", "varpo"]), cmd
    return words[prefix:], env


def run_varpo(args: list[str]):
    """``varpo ARGS`` through the click app in this process (errors are caught and shown, as the CLI does)."""
    from varpo.cli import app

    return CliRunner().invoke(app, args)


def test_varpo_args_reads_a_command_like_the_shell():
    assert varpo_args("X_Y=1 python -m varpo train 'a b' k=v  # note") == (["train", "a b", "k=v"], {"X_Y": "1"})
    assert varpo_args("varpo --help") == (["--help"], {})
    assert run_varpo(["train", "configs/none.yaml"]).exit_code == 2  # a failing command is seen as failing
