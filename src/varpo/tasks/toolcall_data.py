"""Data of the tool-calling task: the typed catalogue and synthetic generator, and the three file loaders.

:func:`generate_records` builds short synthetic requests over a small typed catalogue (for warm-starting and
training a tiny model on CPU), optionally corrupting a fraction of the gold completions; :func:`load_records`
reads ToolRL's verl parquet and SFT JSON layouts, and BFCL question files. The task and its rewards are in
:mod:`varpo.tasks.toolcall`, which re-exports the names here.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from varpo.tasks.base import in_split
from varpo.tasks.io import Skipped, get_field, read_records
from varpo.tasks.toolrl_rules import check_ground_truth, parse_ground_truth
from varpo.text import as_chat, prompt_text

# ---------------------------------------------------------------------------------------------------------------
# Catalogue of the built-in generator: small, typed, and every value appears verbatim in the request.


@dataclass(frozen=True)
class Param:
    """One typed tool parameter. `values`: the vocabulary (str/enum) or the inclusive range (int)."""

    name: str
    type: str  # "str" | "int" | "float" | "bool" | "enum"
    values: tuple = ()
    words: tuple[str, str] = ("on", "off")  # how a bool reads in the request (True, False)

    def sample(self, rng: random.Random) -> Any:
        if self.type in ("str", "enum"):
            return rng.choice(self.values)
        if self.type == "int":
            return rng.randint(*self.values)
        if self.type == "float":  # one decimal, never integral, so the JSON shows a float
            return rng.randint(1, 199) + rng.randint(1, 9) / 10
        return rng.random() < 0.5

    def say(self, value: Any) -> str:
        """The value as the user's request spells it."""
        if self.type == "bool":
            return self.words[0] if value else self.words[1]
        return str(value)

    def signature(self) -> str:
        return f"{self.name}: {'|'.join(self.values)}" if self.type == "enum" else f"{self.name}: {self.type}"


@dataclass(frozen=True)
class Tool:
    name: str
    params: tuple[Param, ...]
    requests: tuple[str, ...]  # templates over the parameter names

    def signature(self) -> str:
        return f"{self.name}({', '.join(p.signature() for p in self.params)})"


CITIES = ("Paris", "Rome", "Tokyo", "Lima", "Oslo", "Cairo", "Delhi", "Berlin", "Madrid", "Seoul", "Sydney", "Boston")
NAMES = ("Alice", "Bob", "Carol", "Dan", "Eve", "Frank", "Grace", "Hana", "Ivan", "Jack", "Kim", "Leo")
MESSAGES = ("see you soon", "running late", "call me back", "happy birthday", "good night", "lunch at noon")
PHRASES = ("good morning", "thank you", "where is the station", "how are you", "see you tomorrow", "I am hungry")
SONGS = ("Yellow", "Hello", "Imagine", "Hey Jude", "Let It Be", "Halo", "Clocks", "Wonderwall", "Vogue", "Faded")
RESTAURANTS = ("Luigi", "Sakura", "Blue Fin", "Casa Rosa", "Golden Wok", "Le Petit", "Olive Tree", "Spice Hub")
SYMBOLS = ("AAPL", "TSLA", "NVDA", "MSFT", "AMZN", "GOOG", "META", "INTC")
CHORES = ("buy milk", "pay rent", "call mom", "water plants", "walk the dog", "book flights", "renew passport")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")

CATALOGUE: tuple[Tool, ...] = (
    Tool(
        "get_weather",
        (Param("city", "str", CITIES), Param("unit", "enum", ("celsius", "fahrenheit"))),
        ("What is the weather in {city} in {unit}?", "Show the {city} weather in {unit}."),
    ),
    Tool(
        "set_timer",
        (Param("minutes", "int", (1, 90)),),
        ("Set a timer for {minutes} minutes.", "Start a {minutes} minute timer."),
    ),
    Tool(
        "send_message",
        (Param("to", "str", NAMES), Param("text", "str", MESSAGES)),
        ("Send {to} the message {text}.", "Tell {to}: {text}."),
    ),
    Tool(
        "convert_currency",
        (Param("amount", "float"), Param("currency", "enum", ("euro", "pound", "yen"))),
        ("Convert {amount} dollars to {currency}.", "How much is {amount} dollars in {currency}?"),
    ),
    Tool(
        "play_music",
        (Param("song", "str", SONGS), Param("shuffle", "bool")),
        ("Play {song} with shuffle {shuffle}.",),
    ),
    Tool(
        "book_table",
        (Param("restaurant", "str", RESTAURANTS), Param("people", "int", (1, 12)), Param("hour", "int", (17, 22))),
        ("Book a table at {restaurant} for {people} people at {hour}.", "Reserve {restaurant} at {hour} for {people}."),
    ),
    Tool(
        "translate",
        (Param("text", "str", PHRASES), Param("language", "enum", ("french", "german", "spanish", "italian"))),
        ("Translate {text} to {language}.", "Say {text} in {language}."),
    ),
    Tool(
        "switch_light",
        (Param("room", "enum", ("kitchen", "bedroom", "office", "garage")), Param("on", "bool")),
        ("Turn {on} the {room} light.", "Switch the {room} light {on}."),
    ),
    Tool(
        "get_stock_price",
        (Param("symbol", "str", SYMBOLS),),
        ("What is the price of {symbol}?", "Check the {symbol} stock price."),
    ),
    Tool(
        "add_reminder",
        (Param("task", "str", CHORES), Param("day", "enum", DAYS), Param("urgent", "bool", words=("high", "low"))),
        ("Remind me to {task} on {day}, {urgent} priority.",),
    ),
)

# Requests no listed tool serves, with the reply a good assistant gives instead of calling a tool.
NO_TOOL: tuple[tuple[str, str], ...] = (
    ("Hello!", "Hello! How can I help?"),
    ("Thank you.", "You are welcome."),
    ("Who are you?", "I am an assistant that can use tools."),
    ("What can you do?", "I can call the tools listed above."),
    ("Good night.", "Good night!"),
    ("Order a pizza.", "Sorry, no tool can order food."),
    ("Call a taxi.", "Sorry, no tool can book a taxi."),
    ("Tell me a joke.", "Sorry, I only help with the listed tools."),
    ("Clean my room.", "Sorry, I cannot do that."),
    ("Buy me a car.", "Sorry, no tool can buy things."),
)

FORMAT_HINT = (
    "Reply with <think> reasoning </think>, then either <tool_call> with one JSON object "
    '{"name": ..., "parameters": {...}} per line </tool_call>, or <response> reply </response>.'
)

# ToolRL's ground truths all use this think sentence; BFCL conversions reuse it.
TOOLRL_THINK = "I should use the appropriate tool with proper parameters to respond to the user's need."


def render_completion(think: str, calls: list[dict] | None = None, response: str | None = None) -> str:
    """A reply in ToolRL's layout: think block, then the tool-call block and/or the response block."""
    parts = [f"<think> {think} </think>"]
    if calls:
        lines = "\n".join(json.dumps(c, ensure_ascii=False) for c in calls)
        parts.append(f"<tool_call>\n{lines}\n</tool_call>")
    if response is not None:
        parts.append(f"<response> {response} </response>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# Corruptions of gold demonstrations (the `corrupt_frac` knob): each one lowers format or correctness.


def _corrupt_format(text: str, rng: random.Random) -> tuple[str, str]:
    closer = "</tool_call>" if "</tool_call>" in text else "</response>"
    options = {
        "format:no_think": text.split("</think>\n", 1)[1],
        "format:unclosed_think": text.replace(" </think>", "", 1),
        "format:no_newline": text.replace("</think>\n", "</think> ", 1),
        "format:trailing_text": text + "\nDone.",
        "format:unclosed_block": text.replace(closer, "", 1),
    }
    label = rng.choice(sorted(options))
    return options[label], label


def _corrupt_value(calls: list[dict], prompt_tools: list[Tool], rng: random.Random) -> tuple[list[dict], str]:
    calls = json.loads(json.dumps(calls))  # deep copy
    i = rng.randrange(len(calls))
    kinds = ["value:wrong_value", "value:missing_param", "value:wrong_tool"] + (
        ["value:missing_call"] if len(calls) > 1 else []
    )
    label = rng.choice(kinds)
    tool = next(t for t in CATALOGUE if t.name == calls[i]["name"])
    if label == "value:wrong_value":
        param = rng.choice(tool.params)
        old = calls[i]["parameters"][param.name]
        new = old
        while new == old:
            new = param.sample(rng)
        calls[i]["parameters"][param.name] = new
    elif label == "value:missing_param":
        del calls[i]["parameters"][rng.choice(tool.params).name]
    elif label == "value:wrong_tool":
        others = [t.name for t in prompt_tools if t.name != tool.name] or [t.name for t in CATALOGUE if t is not tool]
        calls[i]["name"] = rng.choice(others)
    else:
        del calls[-1]
    return calls, label


# ---------------------------------------------------------------------------------------------------------------
# The generator


def _request(
    rng: random.Random, no_tool_frac: float, two_call_frac: float
) -> tuple[str, list[Tool], list[dict], str | None]:
    """(request, needed tools, gold calls, gold response) for one random request."""
    u = rng.random()
    if u < no_tool_frac:
        request, response = rng.choice(NO_TOOL)
        return request, [], [], response
    tools = [rng.choice(CATALOGUE)]
    if u < no_tool_frac + two_call_frac:
        tools.append(rng.choice(CATALOGUE))
    calls, sentences = [], []
    for tool in tools:
        while True:  # a repeated tool must get different arguments, or the two calls would be one
            args = {p.name: p.sample(rng) for p in tool.params}
            if all(args != c["parameters"] for c in calls):
                break
        template = rng.choice(tool.requests)
        sentences.append(template.format(**{p.name: p.say(args[p.name]) for p in tool.params}))
        calls.append({"name": tool.name, "parameters": args})
    return " ".join(sentences), tools, calls, None


def _prompt(request: str, tools: list[Tool], chat: bool, instructions: bool) -> str | list[dict]:
    listing = "Tools:\n" + "\n".join(t.signature() for t in tools)
    if instructions:
        listing = f"{FORMAT_HINT}\n{listing}"
    if chat:
        return [{"role": "system", "content": listing}, {"role": "user", "content": request}]
    return f"{listing}\nUser: {request}\n"


def generate_records(
    n: int,
    seed: int,
    split: str,
    chat: bool,
    *,
    two_call_frac: float,
    no_tool_frac: float,
    corrupt_frac: float,
    tools_in_prompt: int,
    instructions: bool,
) -> list[dict]:
    """`n` requests with gold replies (the rows of :meth:`ToolCallTask.generate`). Columns: prompt, completion, ground_truth, kind, corruption.

    `kind` is "single", "multi" (two calls) or "none" (no tool). Plain-string prompts end with a newline and the
    completion starts with `<think>`; `chat=True` gives a system message (tool list) + user message, and an
    assistant-message completion.
    """
    rng = random.Random(f"toolcall/{seed}/{split}")
    records = []
    while len(records) < n:
        request, needed, calls, response = _request(rng, no_tool_frac, two_call_frac)
        names = {t.name for t in needed}
        distractors = rng.sample([t for t in CATALOGUE if t.name not in names], tools_in_prompt - len(names))
        listed = list({t.name: t for t in needed}.values()) + distractors
        rng.shuffle(listed)
        # Tool requests are split by the request (held-out argument combinations); the few no-tool
        # requests by request + listed tools, so both splits keep some.
        key = request if calls else f"{request}|{sorted(t.name for t in listed)}"
        if not in_split(key, split):
            continue
        # Think blocks stay one short sentence: the completion is what a tiny model has to learn.
        if response is not None:
            think, kind = "No tool fits.", "none"
        elif len(calls) == 1:
            think, kind = f"Use {calls[0]['name']}.", "single"
        else:
            a, b = calls[0]["name"], calls[1]["name"]
            think, kind = (f"Use {a} twice." if a == b else f"Use {a} and {b}."), "multi"
        gold = render_completion(think, calls or None, response)
        records.append(
            {
                "prompt": _prompt(request, listed, chat, instructions),
                "completion": gold,
                "ground_truth": gold,
                "kind": kind,
                "corruption": "",
                "_calls": calls,
                "_listed": listed,
                "_think": think,
            }
        )
    for i in sorted(rng.sample(range(n), round(corrupt_frac * n))):
        r = records[i]
        if r["kind"] != "none" and rng.random() < 0.5:
            calls, label = _corrupt_value(r["_calls"], r["_listed"], rng)
            r["completion"], r["corruption"] = render_completion(r["_think"], calls), label
        else:
            r["completion"], r["corruption"] = _corrupt_format(r["completion"], rng)
    for r in records:
        del r["_calls"], r["_listed"], r["_think"]
        if chat:
            r["completion"] = as_chat(r["completion"], "assistant")
    return records


# ---------------------------------------------------------------------------------------------------------------
# The loaders


def load_records(path: str, layout: str = "auto", chat: bool | None = None, answers: str | None = None) -> list[dict]:
    """Rows of a ToolRL/BFCL file (:meth:`ToolCallTask.load`). Same columns as `generate` (corruption is "").

    Layouts (`layout="auto"` picks by the first row's fields):
    * "verl": ToolRL's verl parquet/JSONL rows: `prompt` (chat messages), `reward_model.ground_truth`.
    * "sft": ToolRL's SFT rows `{instruction, input, output}` (JSON list or JSONL); the prompt becomes a
      system message (instruction) and a user message (input), as ToolRL's own preprocessing does.
    * "bfcl": a BFCL question file (`BFCL_v4_simple_python.json`, ...), with gold answers read from
      `answers` or the sibling `possible_answer/<same name>`; the first acceptable value of every parameter
      that has one becomes the gold argument.
    `chat=None` keeps the file's prompt form (chat messages for all three); `chat=False` flattens the
    messages into one string (contents joined by blank lines), `chat=True` keeps messages.

    The gold calls are read after the gold's `</think>`, so a think block that mentions `<tool_call>` does
    not hide them (`toolrl_rules.gold_answer_part`). Rows that cannot grade anything are skipped, with one
    `io.SkippedRowsWarning` that counts them and names the first few (file, 1-based row, reason): a missing
    prompt/input/output, a ground truth that is not a string, a gold call that is not one-line JSON
    `{"name": str, "parameters": {...}}`, a BFCL question without an answer. If no row is left, ValueError.
    """
    rows = read_records(path)
    if layout == "auto":
        layout = _detect_layout(rows, str(path))
    skipped = Skipped(path, len(rows))
    if layout == "verl":
        pairs = [_verl_pair(r) for r in rows]
    elif layout == "sft":
        pairs = [_sft_pair(r) for r in rows]
    elif layout == "bfcl":
        pairs = _bfcl_pairs(rows, Path(answers) if answers else _bfcl_answer_path(Path(path)))
    else:
        raise ValueError(f"unknown toolcall layout {layout!r} (use 'verl', 'sft', 'bfcl' or 'auto')")
    records = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, str):
            skipped.skip(i, pair)
            continue
        prompt, gt = pair
        if reason := check_ground_truth(gt):
            skipped.skip(i, reason)
            continue
        prompt = [dict(m) for m in prompt] if isinstance(prompt, list) else prompt
        as_messages = isinstance(prompt, list) if chat is None else chat
        if as_messages and isinstance(prompt, str):
            prompt = as_chat(prompt, "user")
        elif not as_messages and isinstance(prompt, list):
            prompt = prompt_text(prompt)
        gt_calls = parse_ground_truth(gt)
        kind = "none" if gt_calls is None else ("single" if len(gt_calls) == 1 else "multi")
        records.append(
            {
                "prompt": prompt,
                "completion": as_chat(gt, "assistant") if as_messages else gt,
                "ground_truth": gt,
                "kind": kind,
                "corruption": "",
            }
        )
    skipped.report(len(records))
    return records


def _verl_pair(row: dict) -> tuple[Any, Any] | str:
    prompt = row.get("prompt")
    if not _is_prompt(prompt):
        return "missing or empty field 'prompt'"
    return prompt, get_field(row, "reward_model.ground_truth")


def _sft_pair(row: dict) -> tuple[Any, Any] | str:
    for key in ("input", "output"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            return f"missing or empty field {key!r}"
    return _sft_prompt(row), row["output"]


def _is_prompt(prompt: Any) -> bool:
    if isinstance(prompt, str):
        return bool(prompt.strip())
    return isinstance(prompt, list) and bool(prompt) and all(isinstance(m, dict) and "content" in m for m in prompt)


def _detect_layout(rows: list[dict], source: str) -> str:
    """The layout of the first of the first 20 rows whose fields tell it (a bad first row must not decide)."""
    for row in rows[:20]:
        if get_field(row, "reward_model") is not None:
            return "verl"
        if "output" in row and "input" in row:
            return "sft"
        if "question" in row and "function" in row:
            return "bfcl"
    raise ValueError(f"{source}: cannot tell the toolcall layout from fields {sorted(rows[0])}; pass layout=")


def _sft_prompt(row: dict) -> list[dict]:
    instruction = row.get("instruction")
    messages = [{"role": "system", "content": instruction}] if isinstance(instruction, str) and instruction else []
    return messages + [{"role": "user", "content": row["input"]}]


# --- BFCL -------------------------------------------------------------------------------------------------------


def _bfcl_answer_path(question_path: Path) -> Path:
    return question_path.parent / "possible_answer" / question_path.name


def _bfcl_system(functions: list[dict]) -> str:
    lines = ["You can use the following tools:"]
    for i, f in enumerate(functions, 1):
        params = (f.get("parameters") or {}).get("properties", {})
        lines += [f"{i}. Name: {f['name']}", f"Description: {f.get('description', '')}"]
        lines.append(f"Parameters: {json.dumps(params, ensure_ascii=False)}")
    return "\n".join(lines + ["", FORMAT_HINT])


def _bfcl_call(answer: dict) -> dict:
    ((name, params),) = answer.items()
    args = {}
    for key, acceptable in params.items():
        chosen = [v for v in acceptable if v != ""]  # "" marks an optional parameter that may be omitted
        if chosen:
            args[key] = chosen[0]
    return {"name": name, "parameters": args}


def _bfcl_pairs(rows: list[dict], answer_path: Path) -> list[tuple[list[dict], str] | str]:
    answers = {r.get("id"): r.get("ground_truth") for r in read_records(answer_path)}
    pairs: list[tuple[list[dict], str] | str] = []
    for row in rows:
        if row.get("id") not in answers:
            pairs.append(f"no gold answer for id {row.get('id')!r} in {answer_path}")
            continue
        try:
            turn = row["question"][0]
            user = [{"role": m["role"], "content": m["content"]} for m in turn]
            prompt = [{"role": "system", "content": _bfcl_system(row["function"])}] + user
            calls = [_bfcl_call(a) for a in answers[row["id"]]]
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
            pairs.append(f"malformed BFCL row ({type(e).__name__}: {str(e)[:60]})")
            continue
        pairs.append((prompt, render_completion(TOOLRL_THINK, calls)))
    return pairs
