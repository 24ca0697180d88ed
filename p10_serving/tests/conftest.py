"""Real toy bundles (untrained, made by dlm_core.testing in a few seconds), built once per test session."""

import pytest


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict:
    from dlm_core.testing import toy_image_bundle, toy_text_bundle

    root = tmp_path_factory.mktemp("bundles")
    return {"img": toy_image_bundle(root, "image-classification", name="img"),
            "anom": toy_image_bundle(root, "anomaly-detection", name="anom"),
            "txt": toy_text_bundle(root, "text-classification", name="txt"),
            "search": toy_text_bundle(root, "text-retrieval", name="search")}


@pytest.fixture(scope="session")
def predictors(bundles) -> dict:
    from p10_serving.registry import load_models

    return {p.name: p for p in load_models(list(bundles.values()))}


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on 127.0.0.1 for this test session (Debian's postgresql package, which `make test`
    installs); a function that hands out a fresh database URL. Skipped, saying why, where it is not installed."""
    from dlm_core.testing import PostgresServer

    server = PostgresServer.start_or_skip()
    yield server.new_database
    server.stop()
