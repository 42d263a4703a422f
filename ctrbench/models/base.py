"""What every model shares: the output type and a builder from config."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModelOutput:
    logits: torch.Tensor  # [B], before the sigmoid
    aux_loss: torch.Tensor | None = None  # added to the loss with the model's own weight (DIEN)


# CTRModel.packed_layers' compiled functions, one per method
_COMPILED: dict = {}


class CTRModel(nn.Module):
    """Base class: ``forward(batch) -> ModelOutput``; ``embedding_tables()`` for regularizers.

    ``compilable``: whether ``device.compile=true`` puts the model under torch.compile (a model
    whose forward breaks the graph at every step runs eager instead, and the run records it).

    ``eval_rows_cpu``: the evaluation batch size on CPU when ``trainer.eval_batch_size`` is null
    (``evaluate.default_eval_batch_size``); ``eval_positions_cpu``: if set, evaluation batches on
    CPU then also hold at most this many history positions (``evaluate.resolve_eval_positions``).

    ``pack_histories``: whether a mostly padded batch on CPU runs on its real history positions
    (``nn.layers.packed_history``: the same values up to float rounding); set per run by the
    trainer from ``trainer.pack_histories``. Off by default, so that a model built alone, and every
    run that does not ask for it, computes exactly what the padded form computes.

    ``has_recurrence``: whether the model steps a recurrence (DIEN's GRUs); ``native_recurrence``:
    whether it runs them in training in ``nn/csrc/gru_scan.c`` (same values up to float rounding),
    set per run by the trainer from ``trainer.native_recurrence``; off for a model built alone.

    ``packed_head``: whether the model runs the layers after its lookups on a packed batch through
    ``packed_layers`` (DIN, DeepFM, PNN); ``compile_packed``: whether ``packed_layers`` puts them under
    torch.compile in training, set per run by the trainer from ``trainer.compile_packed``; off for a
    model built alone."""

    compilable = True
    has_recurrence = False
    native_recurrence = False
    pack_histories = False
    packed_head = False
    compile_packed = False
    eval_rows_cpu = 2048
    eval_positions_cpu: int | None = None

    def packed_layers(self, layers, *args):
        """``layers(*args)``: a method of this model that holds the layers after the lookups of a packed
        training batch (tensors in, logits out). With ``compile_packed``, in training with gradients,
        it runs under ``torch.compile(dynamic=True)``: inductor fuses its element-wise work and its
        backward into a few generated loops around the matrix products, and one graph with symbolic
        sizes serves every packed size. The compiled function is kept per method (outside the
        module, so that copies and checkpoints of the model hold nothing compiled)."""
        if self.compile_packed and self.training and torch.is_grad_enabled():
            fn = _COMPILED.get(layers.__func__)
            if fn is None:
                fn = _COMPILED[layers.__func__] = torch.compile(layers.__func__, dynamic=True)
            return fn(self, *args)
        return layers(*args)

    @property
    def has_unused_parameters(self) -> bool:
        """Whether some parameter does not reach the training loss (DDP then has to look for such
        parameters at every step: ``find_unused_parameters``). Every model here uses all of its
        parameters except where it says otherwise; ``tests/test_models.py`` checks each."""
        return False

    def embedding_tables(self) -> list[nn.Embedding]:
        return [m for m in self.modules() if isinstance(m, nn.Embedding)]

    def variant(self) -> dict:
        """Switches that make this run differ from another (recorded in metrics.json)."""
        return {}
