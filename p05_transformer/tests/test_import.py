import importlib


def test_package_imports_and_has_version():
    mod = importlib.import_module("p05_transformer")
    assert mod.__version__ == "0.1.0"
