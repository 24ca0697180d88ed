"""p03_cnn: CNN image classifier with augmentation, confusion matrix, ONNX export."""

__version__ = "0.1.0"
