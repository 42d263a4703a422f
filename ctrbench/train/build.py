"""How a run's parts are built from its config: the model (``model._target_`` with the vocabulary
and the activation), the regularizer, the learning-rate schedule, and the training setup a run
records. The place to look to see how a model of your own gets built (docs/extending.md)."""

from __future__ import annotations

import functools
import inspect
import logging

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from ctrbench.data.schema import Vocab
from ctrbench.errors import ConfigError
from ctrbench.models.base import CTRModel
from ctrbench.nn.activations import PReLU
from ctrbench.train.regularizers import Regularizer

log = logging.getLogger("ctrbench")


def build_model(model_cfg: DictConfig, act_cfg: DictConfig, vocab: Vocab) -> CTRModel:
    """Instantiate ``model._target_`` with the vocabulary and the activation factory.

    With ``act.in_attention=false`` a model's attention MLP keeps PReLU (the paper's baseline
    activation) while every other hidden layer uses ``act``.
    """
    kwargs = OmegaConf.to_container(model_cfg, resolve=True)
    target = kwargs.pop("_target_")
    kwargs.pop("name", None)
    act_factory = instantiate(act_cfg_without_name(act_cfg))
    cls = get_class(target)
    if "attention_act" in inspect.signature(cls.__init__).parameters and not act_cfg.get("in_attention", True):
        kwargs["attention_act"] = functools.partial(PReLU, init=0.1)
    try:
        model = cls(vocab=vocab, act=act_factory, **kwargs)
    except TypeError as e:
        raise ConfigError(f"model '{model_cfg.get('name')}' does not accept this config: {e}") from None
    except ValueError as e:
        raise ConfigError(f"model '{model_cfg.get('name')}': {e}") from None
    return model


def act_cfg_without_name(act_cfg: DictConfig) -> DictConfig:
    """The config minus the keys that describe it rather than its ``_target_``'s arguments."""
    cfg = OmegaConf.to_container(act_cfg, resolve=True)
    for key in ("name", "in_attention"):
        cfg.pop(key, None)
    return OmegaConf.create(cfg)


def build_regularizer(reg_cfg: DictConfig) -> Regularizer:
    cfg = OmegaConf.to_container(reg_cfg, resolve=True)
    cfg.pop("name", None)
    return instantiate(cfg)


def schedule_period(schedule: DictConfig) -> tuple[str, int]:
    """The decay period as configured: ``("every_epochs", n)`` when ``every_epochs`` is set, else
    ``("every_steps", n)``."""
    if schedule.get("every_epochs"):
        return "every_epochs", int(schedule.every_epochs)
    return "every_steps", int(schedule.get("every_steps", 1) or 1)


def lr_lambda(schedule: DictConfig, steps_per_epoch: int):
    """The learning-rate factor at a step: ``none``, or ``exponential`` / ``step`` decay by ``gamma``
    every ``every_steps`` steps (or every ``every_epochs`` epochs, when that is set)."""
    kind = schedule.get("type", "none")
    gamma = float(schedule.get("gamma", 1.0))
    unit, n = schedule_period(schedule)
    every = n * max(steps_per_epoch, 1) if unit == "every_epochs" else n
    if kind == "none":
        return lambda step: 1.0
    if kind == "exponential":
        return lambda step: gamma ** (step / every)
    if kind == "step":
        return lambda step: gamma ** (step // every)
    raise ConfigError(f"unknown trainer.schedule.type {kind!r}: expected none, exponential or step")


def resolve_pack_histories(setting, bucket: int) -> bool:
    """``trainer.pack_histories``: ``auto`` packs uniformly shuffled batches (``trainer.bucket`` 0 or 1:
    the papers' table setups, whose batches are mostly padding); length-bucketed batches (the
    default) are little padding and stay padded, computing exactly what they always did."""
    value = str(setting).lower() if setting is not None else "auto"
    if value not in ("auto", "true", "false"):
        raise ConfigError(f"trainer.pack_histories={setting!r} is invalid: expected auto, true or false")
    return value == "true" or (value == "auto" and bucket <= 1)


def resolve_native_recurrence(setting, model: CTRModel, device) -> bool:
    """``trainer.native_recurrence``: whether a model with recurrences (``has_recurrence``: DIEN)
    runs them in training in ``nn/csrc/gru_scan.c``. ``auto``: on CPU when the library builds (a
    warning says why not, and the torch ops run); ``true``: the same, and a one-line error where
    it cannot; ``false``: torch ops. Models without recurrences: False whatever the setting."""
    return _resolve_native(setting, "native_recurrence", "recurrences", model.has_recurrence, device)


def resolve_native_dice(setting, has_dice: bool, device, compiled: bool) -> bool:
    """``trainer.native_dice``: whether the model's Dice activations run in training in
    ``nn/csrc/dice.c`` (rows without a mask; the rest as torch ops). ``auto``, ``true``, ``false``
    as ``trainer.native_recurrence``; a model without Dice, or a compiled one (torch.compile does not
    trace the native call), False whatever the setting."""
    return _resolve_native(setting, "native_dice", "Dice activations", has_dice and not compiled, device)


def _resolve_native(setting, key: str, what: str, applies: bool, device) -> bool:
    value = auto_setting(setting, key)
    if value == "false" or not applies:
        return False
    from ctrbench.nn import native

    if torch.device(device).type != "cpu":
        why = f"the native {what} run on CPU, and this run is on {device}"
    elif native.library() is None:
        why = f"the native {what} could not be built: {native.unavailable_reason()}"
    else:
        return True
    return unavailable(value, key, why, f"the {what} run as torch ops")


def auto_setting(setting, key: str) -> str:
    """A ``trainer.<key>`` setting of ``auto``, ``true`` or ``false`` (null: auto), lower-cased; a
    one-line error for anything else."""
    value = str(setting).lower() if setting is not None else "auto"
    if value not in ("auto", "true", "false"):
        raise ConfigError(f"trainer.{key}={setting!r} is invalid: expected auto, true or false")
    return value


def unavailable(value: str, key: str, why: str, fallback: str, advice: str = "use auto or false") -> bool:
    """False, for a ``trainer.<key>`` (``auto_setting``'s ``value``) that applies but cannot be had
    for reason ``why``: with ``true`` a one-line error ending in ``advice``, with ``auto`` a warning
    naming the ``fallback`` that runs instead."""
    if value == "true":
        raise ConfigError(f"trainer.{key}=true: {why}; {advice}")
    log.warning(f"{why}; {fallback} (trainer.{key}=auto)")
    return False


def training_setup(cfg: DictConfig) -> dict:
    """How the weights were trained, recorded in metrics.json's ``variant.training`` (and shown by
    ``ctrbench table``): optimizer and learning rate, (global) batch size, learning-rate schedule,
    gradient clipping, and length bucketing (0: uniformly shuffled batches)."""
    t = cfg.trainer
    kind = str(t.schedule.get("type", "none"))
    schedule: str | dict = kind
    if kind != "none":
        unit, n = schedule_period(t.schedule)
        schedule = {"type": kind, "gamma": float(t.schedule.get("gamma", 1.0)), unit: n}
    bucket = int(t.bucket or 0)
    return {
        "optimizer": str(cfg.optim.get("name", cfg.optim.get("_target_", "?"))),
        "lr": float(cfg.optim.lr),
        "batch_size": int(t.batch_size),
        "schedule": schedule,
        "grad_clip": None if t.get("grad_clip") is None else float(t.grad_clip),
        "bucket": bucket if bucket > 1 else 0,
    }
