import json
import time

from dlm_core.benchmark import interleaved_medians, machine, write_result


def test_interleaved_medians_rank_a_slow_call_above_a_fast_one():
    res = interleaved_medians({"fast": lambda: None, "slow": lambda: time.sleep(0.005)}, rounds=5, warmup=1)
    assert res["slow"] > 0.004 > res["fast"]


def test_write_result_prints_and_writes_json(tmp_path, capsys):
    result = {"bench": "toy", "machine": machine(), "ours": 1.0, "peer": 2.0, "ratio": 0.5, "goal": "lower"}
    path = write_result("toy", result, path=tmp_path / "toy.json")
    assert json.loads(capsys.readouterr().out) == json.loads(path.read_text()) == result
    assert result["machine"]["cores"] >= 1 and result["machine"]["cpu"]
