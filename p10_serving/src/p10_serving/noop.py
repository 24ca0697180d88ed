"""A model that does nothing (`run_serve --noop`): what is left of a request's latency is the server's own overhead
(HTTP, JSON, validation, the batcher, metrics). Same interface as a dlm_core Predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlm_core.predictors import BadInput, BatchOutput


class NoOp:
    """The no-op model (module docstring)."""

    name, version, task, sha256 = "noop", "0", "noop", "0" * 64
    path = Path("<built-in>")
    manifest = {"created": "", "metrics": {"headline": "none", "values": {"none": 0.0}}}
    headline_metric = ("none", 0.0)

    def self_check(self) -> float:
        return 0.0

    def prepare(self, item):
        return item

    def prepare_all(self, items: list, where: str | None = "instances") -> list:
        return list(items)

    def run(self, rows: list):
        n = len(rows)
        return BatchOutput([{"prediction": None} for _ in rows], {"output": np.zeros(n, np.float32)},
                           np.zeros((n, 0), np.float32), np.zeros(n, np.float32), None)

    def example_input(self):
        return 0

    def v2_inputs(self) -> list[dict]:
        return [{"name": "input", "datatype": "FP32", "shape": [-1]}]

    def v2_outputs(self) -> list[dict]:
        return [{"name": "output", "datatype": "FP32", "shape": [-1]}]

    def rows_from_v2(self, inputs: dict) -> list:
        if set(inputs) != {"input"} or inputs["input"].ndim != 1:
            raise BadInput("the no-op model takes one 1-D input named 'input'")
        return list(inputs["input"])
