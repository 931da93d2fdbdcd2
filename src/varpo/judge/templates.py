"""Judge prompt templates: YAML files with a ``user`` message (and optionally a ``system`` one).

Placeholders are :class:`string.Template` fields (``$name`` or ``${name}``; ``$$`` is a literal ``$``), filled in one
pass: text substituted into a template (a completion that itself contains ``$prompt``) is never expanded again.
A template is named by the stem of a file shipped in ``varpo/judge/templates/`` (``tldr``, ``scores``,
``rubric``) or given by a path, so any shipped template can be copied and overridden.

Fields every judge fills: ``$prompt`` (the policy's prompt; chat prompts as "role: content" turns), ``$completion``
(the policy's reply), ``$dimensions`` (one "- name (low-high): description" line per dimension), ``$output_format``
(the JSON object the judge must return, with placeholder values). The rubric judge adds ``$criteria`` (one
"[id] (points) criterion" line per criterion). Any other ``$field`` is read from the dataset column of that name
(e.g. ``$reference`` for SAW's human-written summary).
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

BUILTIN = ("tldr", "scores", "rubric")


@dataclass(frozen=True)
class Template:
    """A judge prompt: ``system`` (may be empty) and ``user`` text with ``$field`` placeholders."""

    name: str
    user: str
    system: str = ""

    @property
    def fields(self) -> set[str]:
        """The placeholder names used by the template."""
        names: set[str] = set()
        for text in (self.system, self.user):
            for m in string.Template.pattern.finditer(text):
                name = m.group("named") or m.group("braced")
                if name:
                    names.add(name)
                elif m.group("invalid") is not None:
                    raise ValueError(f"judge template {self.name!r}: invalid '$' at offset {m.start()} (use $$)")
        return names

    @property
    def digest(self) -> str:
        """Hash of the template text (part of every cache key: editing a template invalidates its judgments)."""
        return hashlib.sha256(json.dumps([self.system, self.user]).encode()).hexdigest()[:16]

    def render(self, values: dict[str, str]) -> list[dict[str, str]]:
        """Chat messages for one judgment. ``values`` must hold every placeholder (checked once at construction
        by :meth:`check`, so a missing one here is a bug)."""
        messages = []
        if self.system:
            messages.append({"role": "system", "content": string.Template(self.system).substitute(values)})
        messages.append({"role": "user", "content": string.Template(self.user).substitute(values)})
        return messages

    def check(self, available: set[str]) -> None:
        missing = sorted(self.fields - available)
        if missing:
            raise ValueError(
                f"judge template {self.name!r} uses unknown field(s) {missing}; available: {sorted(available)}"
            )


def load_template(name_or_path: str) -> Template:
    """A shipped template by name (``tldr``, ``scores``, ``rubric``) or a YAML file by path."""
    if name_or_path in BUILTIN:
        text = resources.files("varpo.judge").joinpath("templates", f"{name_or_path}.yaml").read_text("utf-8")
        source = name_or_path
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ValueError(
                f"judge_template={name_or_path!r} is neither a shipped template {list(BUILTIN)} nor a file"
            )
        text, source = path.read_text("utf-8"), str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"judge template {source}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("user"), str):
        raise ValueError(f"judge template {source}: expected a mapping with a 'user' string (and optional 'system')")
    unknown = set(data) - {"system", "user"}
    if unknown:
        raise ValueError(f"judge template {source}: unknown key(s) {sorted(unknown)}; allowed: system, user")
    system = data.get("system") or ""
    if not isinstance(system, str):
        raise ValueError(f"judge template {source}: 'system' must be a string")
    template = Template(source, data["user"], system)
    template.fields  # noqa: B018 - validates the placeholders now, with the file name in the error
    return template
