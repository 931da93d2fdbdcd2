"""verl ↔ trl: make verl's "is trl installed?" probe ask the question verl actually means.

Why: verl 0.9.1 asks ``is_trl_available()`` (``verl/utils/import_utils.py``) before importing
``AutoModelForCausalLMWithValueHead`` from ``trl.experimental.ppo``, else from ``trl`` — in
``apply_monkey_patch`` (``verl/models/transformers/monkey_patch.py`` ~352, run by the FSDP engine when it builds
the actor) and in the value-head loaders of ``verl/utils/model.py``. trl 1.16, which varpo's TRL engine needs, is
installed but has that class in neither place, so without this every actor build raises ``ImportError`` — on GPU
and CPU alike, whether or not the run uses TRL at all.

What: :func:`install` replaces verl's probe with one that is true iff trl is installed **and** the value-head class
is importable from one of the two places verl looks. That is exactly the condition under which verl's own code
that follows the probe works, so:

* with trl 1.16 the value-head patch is skipped (it only patches ``state_dict`` of a class trl no longer has);
* a trl that has the class again, or a verl that stops importing it, makes the replacement a no-op in effect;
* a verl without ``is_trl_available`` leaves nothing to replace (logged at debug level).

The replacement is installed into ``verl.utils.import_utils`` (so modules imported later pick it up) and into every
already-imported module that holds verl's original function under that name (``from ... import
is_trl_available`` copies the reference). It imports nothing from trl until verl calls the probe.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
from collections.abc import Callable

logger = logging.getLogger("varpo.verl")

PROBE_MODULE = "verl.utils.import_utils"
PROBE = "is_trl_available"
VALUE_HEAD = "AutoModelForCausalLMWithValueHead"
#: Where verl 0.9.1 imports the value-head class from, in its order.
VALUE_HEAD_MODULES = ("trl.experimental.ppo", "trl")


@functools.cache
def value_head_importable() -> bool:
    """True iff ``from <m> import AutoModelForCausalLMWithValueHead`` works for one of :data:`VALUE_HEAD_MODULES`."""
    for name in VALUE_HEAD_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(module, VALUE_HEAD, None) is not None:
            return True
    return False


def _probe_for(original: Callable[[], bool]) -> Callable[[], bool]:
    @functools.wraps(original)
    def is_trl_available() -> bool:
        return bool(original()) and value_head_importable()

    is_trl_available.__varpo_wraps__ = original
    return is_trl_available


def install() -> Callable[[], bool] | None:
    """Install the probe (idempotent); returns it, or ``None`` when this verl has no probe to replace."""
    try:
        probes = importlib.import_module(PROBE_MODULE)
    except ImportError:
        logger.debug("varpo: %s not found; trl probe left alone", PROBE_MODULE)
        return None
    current = getattr(probes, PROBE, None)
    if current is None or not callable(current):
        logger.debug("varpo: %s.%s not found; trl probe left alone", PROBE_MODULE, PROBE)
        return None
    original = getattr(current, "__varpo_wraps__", current)
    probe = current if original is not current else _probe_for(original)
    probes.is_trl_available = probe
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("verl.") and getattr(module, PROBE, None) is original:
            setattr(module, PROBE, probe)
    return probe
