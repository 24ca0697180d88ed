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
