"""run_section_retrain on a tiny event: a tiny serving bundle, 520 feedback rows of the trixie shift, one epoch.
The candidate is exported next to the serving bundle under the same name, its drift reference is the feedback,
its vocabulary knows the shift's new words, and the event's result file points at it (or says why not)."""

import json

import numpy as np
import pytest

from dlm_core.data import load_dataset
from dlm_core.retrain import write_event

TINY = dict(word_features=4000, char_features=4000, dim=16, hidden=32, epochs=1, max_train=1500, batch_size=64)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import dataclasses

    from p06_contrastive.config import SECTION_PRESETS
    from p06_contrastive.section import train_and_export

    root = tmp_path_factory.mktemp("section-retrain")
    cfg = dataclasses.replace(SECTION_PRESETS["quick"], **TINY)
    out = train_and_export(cfg, "v1", baseline=False, root=root / "artifacts", log=lambda *a: None)
    return root, out["bundle"]


def event_for(root, bundle, rows: int, task: str = "text-classification"):
    texts, y = load_dataset("debian-packages-trixie-new").split("stream")
    x = np.array(texts[:rows])
    return write_event(root / "retrain", {"id": f"e{rows}{task[:4]}", "model": "package-section", "version": "v1",
                                          "task": task, "bundle": bundle, "reason": "accuracy"}, x, y[:rows])


def test_retrain_exports_a_candidate_next_to_the_serving_bundle(served):
    from dlm_core.bundle import load_bundle
    from p06_contrastive.cli import retrain_main

    root, bundle = served
    path = event_for(root, bundle, 520)
    assert retrain_main([str(path), "--runs-root", str(root / "runs")]) == 0
    event = json.loads(path.read_text())
    result = json.loads(open(event["result"]).read())
    new = load_bundle(result["bundle"])
    assert new.manifest["name"] == "package-section" and new.manifest["version"] == "retrain-e520text"
    assert new.path.parent == load_bundle(bundle).path.parent
    assert result["feedback_rows"] == 520 and result["feedback_repeat"] >= 1 and 0 < result["test_acc"] <= 1
    assert new.manifest["provenance"]["config"]["max_train"] == TINY["max_train"]  # the serving bundle's config
    # the vocabulary was refitted on train + feedback: the shift's words are columns now
    old_vocab = json.loads((load_bundle(bundle).path / "ngrams.json").read_text())["blocks"][0]["vocab"]
    new_vocab = json.loads((new.path / "ngrams.json").read_text())["blocks"][0]["vocab"]
    assert set(new_vocab) - set(old_vocab)
    assert (root / "runs" / "section-retrain-e520text" / "section_result.json").exists()


def test_too_little_feedback_or_another_task_is_refused_with_a_result(served):
    from p06_contrastive.cli import retrain_main

    root, bundle = served
    for rows, task in ((100, "text-classification"), (520, "image-classification")):
        path = event_for(root, bundle, rows, task)
        with pytest.raises(SystemExit) as exit_:
            retrain_main([str(path)])
        assert exit_.value.code == 2
        result = json.loads(open(json.loads(path.read_text())["result"]).read())
        assert "bundle" not in result and result["error"]
