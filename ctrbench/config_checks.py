"""Up-front checks of a composed config: every user-facing knob gets a one-line error that names
the key, the bad value and what was expected, before any work starts."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from ctrbench.errors import ConfigError


def _get(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, throw_on_missing=False, default=None)


def check_missing(cfg: DictConfig) -> None:
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"missing config value '{missing[0]}' (set it on the command line: {missing[0]}=...)")


def _int(cfg, key, minimum, optional=False):
    v = _get(cfg, key)
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        extra = " or null" if optional else ""
        raise ConfigError(f"{key}={v!r} is invalid: expected an integer >= {minimum}{extra}")


def _positive_float(cfg, key, optional=False):
    v = _get(cfg, key)
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        extra = " or null" if optional else ""
        raise ConfigError(f"{key}={v!r} is invalid: expected a number > 0{extra}")


def check_train(cfg: DictConfig) -> None:
    check_missing(cfg)
    _int(cfg, "seed", 0)
    _int(cfg, "dataset.max_len", 1)
    _int(cfg, "trainer.batch_size", 1)
    _int(cfg, "trainer.eval_batch_size", 1)
    _int(cfg, "trainer.max_epochs", 1)
    _int(cfg, "trainer.max_steps", 1, optional=True)
    _int(cfg, "trainer.eval_every", 1, optional=True)
    _int(cfg, "trainer.patience", 0)
    _int(cfg, "trainer.bucket", 0)
    _int(cfg, "device.threads", 0)
    _positive_float(cfg, "trainer.grad_clip", optional=True)
    _positive_float(cfg, "optim.lr")
    check_dataset(cfg)


def check_dataset(cfg: DictConfig) -> None:
    check_missing(cfg)
    _int(cfg, "dataset.max_len", 1)
    for key in ("dataset.name", "dataset.source", "dataset.protocol"):
        if _get(cfg, key) is None:
            raise ConfigError(f"missing config value '{key}' (the dataset config needs name, source and protocol)")
