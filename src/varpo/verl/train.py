"""Launcher: ``python -m varpo.verl.train [--dry-run] <hydra overrides>`` — validate, then run verl's ``main_ppo``.

Why not just ``python -m verl.trainer.main_ppo``? That works too (the entry point registers everything), but a
mistake in our keys would only surface inside a Ray actor after the cluster and models are up, and a broken
plug-in import only as "Unknown advantage estimator". This launcher, before any Ray or GPU work:

1. imports :mod:`varpo.verl.plugin` directly, so an import error stops the launch with its traceback;
2. composes the config from verl's own config directory with the same overrides (and ``--config-name`` /
   ``--config-path``) ``main_ppo`` will see;
3. runs :func:`varpo.verl.settings.check_config` (our keys and how they combine with verl's), verl's own
   ``validate_config``, and resolves the selected estimator / policy loss / trainer mode in verl's registries;
4. with ``--dry-run`` stops there (exit 0 = this config would start); otherwise calls ``verl.trainer.main_ppo.main``
   with the unchanged command line.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

logger = logging.getLogger("varpo.verl")

DRY_RUN = "--dry-run"
_NAME_FLAGS = ("--config-name", "-cn")
_PATH_FLAGS = ("--config-path", "-cp")


def verl_config_dir() -> str:
    import verl.trainer

    return os.path.join(os.path.dirname(verl.trainer.__file__), "config")


def split_args(args: Sequence[str]) -> tuple[list[str], str, str | None, bool]:
    """``(overrides, config_name, config_path, dry_run)`` from a hydra-style command line."""
    overrides, name, path, dry_run = [], "ppo_trainer", None, False
    it = iter(args)
    for arg in it:
        flag, eq, value = arg.partition("=")
        if arg == DRY_RUN:
            dry_run = True
        elif flag in _NAME_FLAGS + _PATH_FLAGS:
            value = value if eq else next(it, None)
            if value is None:
                raise SystemExit(f"{flag} needs a value")
            if flag in _NAME_FLAGS:
                name = value
            else:
                path = value
        elif arg.startswith("-"):
            raise SystemExit(f"unsupported option {arg!r}; pass hydra overrides (key=value) and {DRY_RUN}")
        else:
            overrides.append(arg)
    return overrides, name, path, dry_run


def compose_config(overrides: Sequence[str], config_name: str = "ppo_trainer", config_dir: str | None = None):
    """The config ``main_ppo`` would get for these overrides (hydra compose; no Ray, no GPUs)."""
    from hydra import compose, initialize_config_dir

    directory = os.path.abspath(config_dir) if config_dir else verl_config_dir()
    with initialize_config_dir(config_dir=directory, version_base=None):
        return compose(config_name=config_name, overrides=list(overrides))


def validate(cfg, preflight_checks: bool = True, dry_run: bool = False, report=None) -> list[str]:
    """All pre-launch checks; returns warnings, raises :class:`ConfigError` (one line per problem) on errors.

    ``preflight_checks=False`` skips :mod:`varpo.verl.preflight` (local files, reward keys vs the task, the reward
    function on a training row, batch arithmetic) — for composing a config on a machine that does not hold its data
    or model. ``dry_run``: what cannot be checked on this machine (an uncached hub model offline) is skipped, not
    an error. ``report`` (a :class:`varpo.verl.preflight.Preflight`) receives what was checked and skipped.
    """
    from verl.trainer.ppo import core_algos
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from varpo.verl import preflight
    from varpo.verl.settings import ConfigError, VarpoSettings, check_config

    warnings = check_config(cfg)
    if preflight_checks:
        keys = VarpoSettings.from_algorithm(cfg.get("algorithm")).reward_keys
        found = preflight.run(cfg, keys, dry_run=dry_run)
        if found.errors:
            raise ConfigError("verl pre-flight failed:\n- " + "\n- ".join(found.errors))
        if report is not None:
            report.checked += found.checked
            report.skipped += found.skipped
    try:
        validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    except Exception as exc:  # verl raises AssertionError/ValueError, wrapped by hydra's InstantiationException
        raise ConfigError(f"verl's validate_config: {_innermost(exc)}") from None
    core_algos.get_adv_estimator_fn(cfg.algorithm.adv_estimator)
    core_algos.get_policy_loss_fn(cfg.actor_rollout_ref.actor.policy_loss.loss_mode)
    if cfg.trainer.use_v1:
        from verl.trainer.ppo.v1 import get_trainer_cls

        get_trainer_cls(cfg.trainer.v1.trainer_mode)
    return warnings


def _innermost(exc: BaseException) -> str:
    """The root cause's message on one line (hydra wraps verl's assertion in a multi-line InstantiationException)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _hydra_message(exc: BaseException) -> str:
    """Hydra's own line (what failed, and its hint) plus the root cause when that adds something."""
    outer = " ".join(str(exc).split()).split(" Config search path:")[0]
    inner = _innermost(exc)
    return outer if inner in ("", "None") or inner in outer else f"{outer} ({inner})"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    overrides, config_name, config_path, dry_run = split_args(args)
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    import varpo.verl.plugin  # noqa: F401  (raises here, loudly, if the plug-in is broken)
    from varpo.verl.preflight import Preflight
    from varpo.verl.settings import ConfigError

    try:
        cfg = compose_config(overrides, config_name, config_path)
    except (HydraException, OmegaConfBaseException) as exc:  # a typo'd key, a bad override: one line, not a traceback
        print(f"error: hydra: {_hydra_message(exc)}", file=sys.stderr)
        return 2
    report = Preflight()
    try:
        warnings = validate(cfg, dry_run=dry_run, report=report)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        logger.warning("varpo: %s", warning)
    summary = (
        f"adv_estimator={cfg.algorithm.adv_estimator} loss_mode={cfg.actor_rollout_ref.actor.policy_loss.loss_mode} "
        f"trainer={'v1:' + cfg.trainer.v1.trainer_mode if cfg.trainer.use_v1 else 'legacy'}"
    )
    if dry_run:
        print(f"varpo: config OK ({summary}); --dry-run, not starting verl")
        for line in report.checked:
            print(f"  checked: {line}")
        for line in report.skipped:
            print(f"  skipped: {line}")
        return 0
    logger.warning("varpo: config OK (%s); starting verl.trainer.main_ppo", summary)
    from verl.trainer.main_ppo import main as verl_main

    sys.argv = [sys.argv[0], *[a for a in args if a != DRY_RUN]]
    verl_main()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
