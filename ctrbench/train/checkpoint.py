"""Checkpoints: weights, optimizer, schedule and RNG state, written atomically."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ctrbench.atomic import atomic_path


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save(path: str | Path, payload: dict) -> None:
    """``torch.save`` atomically: to a temporary file beside ``path``, then renamed into place."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=False)
