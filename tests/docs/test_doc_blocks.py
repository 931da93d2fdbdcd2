"""Every fenced code block in README.md and docs/*.md is executed (or parsed) by this test.

Discovery is generic (new pages and blocks are picked up automatically); the only way to exempt a block is an
explicit, justified annotation on the line before its opening fence::

    <!-- doc-test: skip: <why this block cannot run here> -->
    <!-- doc-test: partial: <why> -->   (bash: run the commands it can, skip the others)

(the annotation may sit among other HTML comments directly above the fence).

Rules per block language:

* ``python`` — run in a fresh interpreter after the page's earlier python blocks (a page is read top to bottom;
  cwd: a temporary directory, offline, private ``VARPO_CACHE``);
* ``bash`` / ``sh`` — every command must be a varpo command this harness knows how to run safely: ``varpo train``
  and ``varpo sweep`` get ``--dry-run`` (if missing), ``varpo --help``/``python -m varpo --help`` run as is; any
  other command (``pip install``, a GPU script, ``varpo demo``) needs the skip annotation with a reason;
* ``yaml`` / ``toml`` / ``json`` — parsed; ``text`` / no language — output shown to the reader, not executed.

Blocks are run with the repository as cwd for bash (configs/ paths resolve) and outputs go to a temporary
directory (``output_dir``/``--out`` are redirected), so the docs never write into the checkout.
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
        return f"{self.page.relative_to(ROOT)}:{self.line}"


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


def env_for(tmp: Path) -> dict[str, str]:
    src = str(ROOT / "src")
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "VARPO_CACHE": os.environ.get("VARPO_DOCS_CACHE", str(tmp / "cache")),
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        "PYTHONWARNINGS": "ignore",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }


def test_blocks_are_discovered():
    assert len(BLOCKS) >= 20 and {b.lang for b in BLOCKS} >= {"python", "bash"}
    # the parser sees annotations and nested fences correctly
    assert all(b.text.count("```") == 0 for b in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_doc_block(block: Block, tmp_path):
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
    env = env_for(tmp_path)
    if lang == "python":
        # a page is read top to bottom: its earlier (runnable) python blocks run first, in the same interpreter
        earlier = [b.text for b in BLOCKS if b.page == block.page and b.lang == "python" and b.skip is None]
        code = "\n\n".join(earlier[: earlier.index(block.text) + 1])
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400
        )
        assert proc.returncode == 0, f"{block.id} failed:\n{proc.stderr[-3000:]}"
        return
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
    for cmd in cmds:
        proc = subprocess.run(
            ["bash", "-c", _with_interpreter(rewrite(cmd, tmp_path))],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert proc.returncode == 0, f"{block.id}: {cmd!r} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"


def _with_interpreter(cmd: str) -> str:
    """``varpo ...`` and ``python -m varpo ...`` both run under this interpreter (``python -m varpo`` as is)."""
    if cmd.startswith("python -m varpo"):
        return f"{sys.executable}{cmd[len('python') :]}"
    return cmd.replace("varpo ", f"{sys.executable} -m varpo ", 1)
