"""ONNX Runtime helpers shared by the predictors (serving), the bundle writer and the export side: a quiet
CPU session, and a graph's input/output signature as the bundle manifest records it. onnxruntime (the
`serve` extra) is imported only when a session is made."""

from __future__ import annotations

import os


def ort_session(path: str | os.PathLike, threads: int = 1):
    """An ONNX Runtime CPU session with `threads` intra-op threads (0 = ORT's default) and no spinning, so an
    idle server does not burn its cores."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def graph_signature(path: str | os.PathLike) -> dict:
    """inputs/outputs of an ONNX file as [{name, dtype, shape}] with -1 for every dynamic axis."""
    sess = ort_session(path, threads=0)

    def spec(arg) -> dict:
        dtype = arg.type.removeprefix("tensor(").removesuffix(")")
        dtype = {"float": "float32", "double": "float64", "float16": "float16"}.get(dtype, dtype)
        return {"name": arg.name, "dtype": dtype, "shape": [d if isinstance(d, int) else -1 for d in arg.shape]}

    return {"inputs": [spec(a) for a in sess.get_inputs()], "outputs": [spec(a) for a in sess.get_outputs()]}
