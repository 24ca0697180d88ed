"""p10_serving: FastAPI + ONNX Runtime service over the other projects' model bundles, metrics, drift."""

__version__ = "0.1.0"
