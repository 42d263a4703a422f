"""Up-front checks of a composed config: every user-facing knob gets a one-line error that names
the key, the bad value and what was expected, before any work starts."""

from __future__ import annotations

import math

from omegaconf import DictConfig, ListConfig, OmegaConf

from ctrbench.errors import ConfigError


def _get(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, throw_on_missing=False, default=None)


def check_missing(cfg: DictConfig) -> None:
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"missing config value '{missing[0]}' (set it on the command line: {missing[0]}=...)")


def _int(cfg, key, minimum, optional=False, maximum=None):
    v = _get(cfg, key)
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum or (maximum is not None and v > maximum):
        extra = " or null" if optional else ""
        bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise ConfigError(f"{key}={v!r} is invalid: expected an integer {bound}{extra}")


def _positive_float(cfg, key, optional=False):
    v = _get(cfg, key)
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        extra = " or null" if optional else ""
        raise ConfigError(f"{key}={v!r} is invalid: expected a number > 0{extra}")


def _non_negative_seconds(cfg, key):
    v = _get(cfg, key)
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0):
        raise ConfigError(f"{key}={v!r} is invalid: expected a number of seconds >= 0")


def check_train(cfg: DictConfig) -> None:
    check_missing(cfg)
    _int(cfg, "seed", 0, maximum=2**63 - 1)  # what torch.manual_seed takes
    _int(cfg, "dataset.max_len", 1)
    _int(cfg, "dataset.eval_max_len", 1, optional=True)
    _int(cfg, "trainer.batch_size", 1)
    _int(cfg, "trainer.eval_batch_size", 1, optional=True)
    if _has(cfg, "trainer.eval_workers"):
        _int(cfg, "trainer.eval_workers", 0)
    _int(cfg, "trainer.max_epochs", 1)
    _int(cfg, "trainer.max_steps", 1, optional=True)
    _int(cfg, "trainer.eval_every", 1, optional=True)
    _int(cfg, "trainer.patience", 0)
    _int(cfg, "trainer.bucket", 0)
    _int(cfg, "device.threads", 0)
    _positive_float(cfg, "trainer.grad_clip", optional=True)
    _non_negative_seconds(cfg, "trainer.progress_every")
    _positive_float(cfg, "optim.lr")
    from ctrbench.memory_budget import KEY, check_budget_value

    check_budget_value(_get(cfg, KEY))
    check_trainer_options(cfg)
    check_model(cfg)
    check_act(cfg)
    check_reg(cfg)
    check_dataset(cfg, missing_checked=True)


def check_evaluate(cfg: DictConfig) -> None:
    """``ctrbench evaluate``'s own settings."""
    check_missing(cfg)
    _int(cfg, "batch_size", 1, optional=True)


def check_dataset(cfg: DictConfig, missing_checked: bool = False) -> None:
    if not missing_checked:
        check_missing(cfg)
    _int(cfg, "dataset.max_len", 1)
    for key in ("dataset.name", "dataset.source", "dataset.protocol"):
        if _get(cfg, key) is None:
            raise ConfigError(f"missing config value '{key}' (the dataset config needs name, source and protocol)")


# ---- the keys the fuzzing of docs/reliability.md (part 6) covers beyond the integers above ---------
#
# Each check applies only when the key is in the config (a model's own keys differ), names the key,
# the bad value and what is expected, and runs before any data is read.


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(cfg, key, minimum=None, maximum=None, strict_min=False, optional=False) -> None:
    """A finite number within [minimum, maximum] (``strict_min``: > minimum)."""
    if not _has(cfg, key):
        return
    v = _get(cfg, key)
    if v is None and optional:
        return
    ok = _is_number(v) and (minimum is None or (v > minimum if strict_min else v >= minimum)) and (maximum is None or v <= maximum)
    if not ok:
        lo = "" if minimum is None else (f" > {minimum}" if strict_min else f" >= {minimum}")
        hi = "" if maximum is None else f" and <= {maximum}"
        raise ConfigError(f"{key}={v!r} is invalid: expected a finite number{lo}{hi}{' or null' if optional else ''}")


def _bool(cfg, key) -> None:
    if _has(cfg, key) and not isinstance(_get(cfg, key), bool):
        raise ConfigError(f"{key}={_get(cfg, key)!r} is invalid: expected true or false")


def _choice(cfg, key, choices) -> None:
    if _has(cfg, key) and _get(cfg, key) not in choices:
        raise ConfigError(f"{key}={_get(cfg, key)!r} is invalid: expected one of {', '.join(map(str, choices))}")


def _int_list(cfg, key, non_empty=False) -> None:
    if not _has(cfg, key):
        return
    v = _get(cfg, key)
    items = list(v) if isinstance(v, (ListConfig, list, tuple)) else None
    if items is None or any(isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= MAX_WIDTH for x in items) or (non_empty and not items):
        what = "a non-empty list" if non_empty else "a list"
        raise ConfigError(f"{key}={_plain(v)!r} is invalid: expected {what} of layer widths (integers from 1 to {MAX_WIDTH}), e.g. [80, 40]")


def _plain(v):
    return OmegaConf.to_container(v) if isinstance(v, (DictConfig, ListConfig)) else v


def _has(cfg, key) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, throw_on_missing=False, default=None) if parent else cfg
    return isinstance(node, DictConfig) and leaf in node


def check_trainer_options(cfg: DictConfig) -> None:
    """trainer.selection / progress / schedule.*, metric.gauc_weighting, device.* (the integers are
    checked in ``check_train``)."""
    from ctrbench.metrics import WEIGHTINGS

    _choice(cfg, "trainer.selection", ("valid", "test_as_valid", "last"))
    _bool(cfg, "trainer.progress")
    _choice(cfg, "trainer.schedule.type", ("none", "exponential", "step"))
    _number(cfg, "trainer.schedule.gamma", 0, strict_min=True)
    if _has(cfg, "trainer.schedule.every_steps"):
        _int(cfg, "trainer.schedule.every_steps", 1)
    if _has(cfg, "trainer.schedule.every_epochs"):
        _int(cfg, "trainer.schedule.every_epochs", 1, optional=True)
    _choice(cfg, "metric.gauc_weighting", WEIGHTINGS)
    _choice(cfg, "device.type", ("auto", "cpu", "cuda"))
    threads = _get(cfg, "device.threads")
    if isinstance(threads, int) and threads > MAX_THREADS:
        raise ConfigError(f"device.threads={threads!r} is invalid: expected an integer from 0 (all cores) to {MAX_THREADS}")
    _bool(cfg, "device.tune_malloc")
    _bool(cfg, "device.compile")


MAX_THREADS = 4096
MAX_WIDTH = 65536  # an embedding or layer width beyond any CTR model (and a tensor size that always fits)


def check_model(cfg: DictConfig) -> None:
    """The keys of the model configs (each only when the chosen model has it)."""
    from ctrbench.models.pnn import PRODUCTS
    from ctrbench.nn.attention import ATTENTION_INPUTS
    from ctrbench.nn.sequence import AUGRU_FORMULAS, EVOLUTIONS

    check_model_class(cfg)
    for key in ("model.embedding_dim", "model.hidden"):
        if _has(cfg, key):
            _int(cfg, key, 1, maximum=MAX_WIDTH)
    if _has(cfg, "model.n_buckets"):
        _int(cfg, "model.n_buckets", 1, maximum=2**31 - 1)
    _int_list(cfg, "model.mlp")
    _int_list(cfg, "model.aux_hidden")
    uses_attention_mlp = _get(cfg, "model.name") == "din" or _get(cfg, "model.attention") == "mlp"
    _int_list(cfg, "model.attention_hidden", non_empty=uses_attention_mlp)
    for key in ("model.attention_softmax", "model.use_user", "model.use_item"):
        _bool(cfg, key)
    _choice(cfg, "model.pooling", ("sum", "mean"))
    _choice(cfg, "model.attention_inputs", ATTENTION_INPUTS)
    _choice(cfg, "model.product", PRODUCTS)
    _choice(cfg, "model.evolution", EVOLUTIONS)
    _choice(cfg, "model.attention", ("bilinear", "mlp"))
    _choice(cfg, "model.augru_formula", AUGRU_FORMULAS)
    _choice(cfg, "model.aux_net", ("inner", "mlp"))
    _choice(cfg, "model.aux_reduction", ("paper", "mean"))
    _choice(cfg, "model.mlp_inputs", ("paper", "code"))
    _number(cfg, "model.aux_alpha", 0)


def check_act(cfg: DictConfig) -> None:
    """The keys of the activation configs."""
    from ctrbench.nn.activations import DICE_MODES

    check_act_class(cfg)
    _bool(cfg, "act.in_attention")
    _number(cfg, "act.init")
    _number(cfg, "act.alpha_init")
    _number(cfg, "act.eps", 0, strict_min=True)
    _number(cfg, "act.momentum", 0, 1, strict_min=True)
    _choice(cfg, "act.mode", DICE_MODES)


def check_reg(cfg: DictConfig) -> None:
    """The regularizer's keys: constructed here directly (it needs no data), so its own checks
    give their one-line ConfigError; through ``hydra.utils.instantiate`` (as the trainer builds it)
    they would come wrapped in Hydra's InstantiationException, which the CLI shows as a traceback."""
    node = _get(cfg, "reg")
    if not isinstance(node, DictConfig):
        return
    _bool(cfg, "reg.include_dense")
    kwargs = OmegaConf.to_container(node, resolve=True)
    kwargs.pop("name", None)
    target = kwargs.pop("_target_", None)
    if not target:
        raise ConfigError("'reg' has no _target_ (the regularizer class)")
    from hydra.utils import get_class

    try:
        cls = get_class(target)
    except Exception as e:  # noqa: BLE001 - hydra raises several kinds
        raise ConfigError(f"'reg._target_': cannot import {target!r} ({str(e).splitlines()[0]})") from None
    from ctrbench.train.regularizers import Regularizer

    if not issubclass(cls, Regularizer):
        raise ConfigError(f"reg._target_={target!r} is not a Regularizer subclass: expected a class deriving from "
                          "ctrbench.train.regularizers.Regularizer")
    try:
        cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"'reg' does not fit {target}: {e}") from None


# ---- the class a config section names: any importable class of the right kind -------------------
#
# A group option is accepted for what its composed node holds, not for its name: a model, activation
# or regularizer of the user's own (a config file on Hydra's search path, or ``model._target_=...``
# on the command line; docs/extending.md) passes the same checks as the built-in ones.


def import_target(target: str):
    """The object a dotted path names (``mylab.models.MyDIN``), imported like Hydra's ``_target_``;
    ImportError / AttributeError (or whatever the module raises) when it cannot be."""
    import importlib

    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
                continue  # this prefix is not a module: the name is an attribute of a shorter one
            raise
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(f"No module named {parts[0]!r}", name=parts[0])


def _target(cfg, key: str, what: str, example: str):
    """``<key>._target_`` imported: one line naming the key when it is missing or cannot be imported."""
    target = _get(cfg, f"{key}._target_")
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"{key}._target_ is missing: expected the dotted path of {what}, e.g. {example}")
    try:
        return target, import_target(target)
    except Exception as e:  # noqa: BLE001 - a user's module may raise anything on import
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise ConfigError(f"{key}._target_={target!r}: cannot import it ({reason}); expected {what}, importable from "
                          "the folder ctrbench runs in or from an installed package") from None


def _arguments(node: DictConfig, drop: tuple[str, ...]) -> dict:
    kwargs = OmegaConf.to_container(node, resolve=True)
    return {k: v for k, v in kwargs.items() if k not in drop}


def _fits_signature(key: str, target: str, obj, kwargs: dict, given: tuple[str, ...] = (), partial: bool = False) -> None:
    """The config's keys are arguments ``obj`` takes (``given``: the ones ctrbench passes itself),
    and, unless ``partial``, every argument it needs is there: one line naming the key otherwise."""
    import inspect

    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return  # no signature to read (a builtin): the constructor says it, if anything
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for g in given:
        if g not in named and not takes_any:
            raise ConfigError(f"{key}._target_={target!r} does not take '{g}', which ctrbench passes it: expected "
                              f"__init__(self, {', '.join(given)}, ...)")
    if not takes_any:
        unknown = [k for k in kwargs if k not in named]
        if unknown:
            options = ", ".join(sorted(named - set(given))) or "nothing besides " + ", ".join(given)
            raise ConfigError(f"{key}.{unknown[0]} is not an argument of {target} (it takes {options})")
    if not partial:
        needed = [n for n, p in params.items() if p.default is p.empty and n not in given and n not in kwargs
                  and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if needed:
            raise ConfigError(f"{key}.{needed[0]} is missing: {target} needs it (add '{needed[0]}: ...' to its config)")


def _node(cfg, key: str, example: str) -> DictConfig:
    node = _get(cfg, key)
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{key}={_plain(node)!r} is invalid: expected a config section with a _target_ ({example})")
    return node


def check_model_class(cfg: DictConfig) -> None:
    """``model``: a ``name`` (what metrics.json records and ``ctrbench table`` shows) and a
    ``_target_`` that is a CTRModel subclass taking the vocabulary, the activation and the config's
    other keys (``ctrbench.train.build.build_model``)."""
    from ctrbench.models.base import CTRModel

    node = _node(cfg, "model", "model=din, or a model/<name>.yaml of your own")
    name = node.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"model.name={_plain(name)!r} is invalid: expected the model's name (e.g. name: mydin in its "
                          "config), which metrics.json records and `ctrbench table` shows")
    target, cls = _target(cfg, "model", "a CTRModel subclass", "mylab.models.MyDIN")
    if not (isinstance(cls, type) and issubclass(cls, CTRModel)) or cls is CTRModel:
        raise ConfigError(f"model._target_={target!r} is not a CTRModel subclass: expected a class deriving from "
                          "ctrbench.models.base.CTRModel whose forward(batch) returns a ModelOutput")
    _fits_signature("model", target, cls, _arguments(node, ("_target_", "name")), given=("vocab", "act"))


def check_act_class(cfg: DictConfig) -> None:
    """``act``: a ``_target_`` that, given the config's other keys, is called with each hidden
    layer's width (``_partial_: true``) to build that layer's activation."""
    node = _node(cfg, "act", "act=prelu, or an act/<name>.yaml of your own")
    target, obj = _target(cfg, "act", "an activation (an nn.Module class built as act(width))", "mylab.nn.MyAct")
    if not callable(obj):
        raise ConfigError(f"act._target_={target!r} is not callable: expected an activation class, built as act(width)")
    _fits_signature("act", target, obj, _arguments(node, ("_target_", "_partial_", "name", "in_attention")), partial=True)
