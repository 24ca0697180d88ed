import dataclasses

import pytest

from dlm_core.config import ArgumentParser, add_config_args, check, config_from_args
from dlm_core.errors import DlmError, NonFiniteLossError, check_finite


@dataclasses.dataclass
class Cfg:
    lr: float = 0.1
    epochs: int = 3
    augment: bool = True
    layers: list[int] = dataclasses.field(default_factory=lambda: [32, 32])
    name: str = "x"

    def __post_init__(self):
        check(self.lr > 0, "--lr must be > 0")


def parse(argv, base=None):
    p = ArgumentParser(prog="t")
    add_config_args(p, Cfg)
    return config_from_args(Cfg, p.parse_args(argv), base=base)


def test_flags_override_preset_and_only_given_flags_apply():
    preset = Cfg(lr=0.5, epochs=10)
    cfg = parse(["--epochs", "2", "--no-augment", "--layers", "8,4"], base=preset)
    assert cfg == Cfg(lr=0.5, epochs=2, augment=False, layers=[8, 4])


def test_validation_error_is_a_dlm_error():
    with pytest.raises(DlmError, match="--lr must be > 0"):
        parse(["--lr", "-1"])


def test_bad_flag_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        parse(["--epochs", "many"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_check_finite_names_step_and_lr():
    check_finite(1.5, step=3, lr=0.1)
    with pytest.raises(NonFiniteLossError, match=r"nan at step 7 lr=0\.3.*hint"):
        check_finite(float("nan"), step=7, lr=0.3)
    with pytest.raises(NonFiniteLossError, match="inf"):
        check_finite(float("inf"), step=1)


def test_cli_bad_config_value_is_one_line_exit_2(dlm):
    proc = dlm("demo", "--lr", "-1")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["error: --lr must be > 0"]


def test_cli_unknown_flag_is_one_line_exit_2(dlm):
    proc = dlm("demo", "--bogus")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "unrecognized arguments: --bogus" in proc.stderr


def test_missing_run_dir_is_a_clear_error():
    from dlm_core.runs import RunDir

    with pytest.raises(DlmError, match="not a run directory"):
        RunDir.open("/nonexistent/run")


def test_run_config_fresh_uses_the_preset_resume_uses_the_saved_config(tmp_path):
    from dlm_core.config import add_run_args, run_config
    from dlm_core.runs import RunDir

    presets = {"default": Cfg(), "quick": Cfg(epochs=1)}

    def args(argv):
        p = ArgumentParser(prog="t")
        add_run_args(p, presets, "proj")
        add_config_args(p, Cfg)
        return p.parse_args(argv)

    cfg, run_dir, resume = run_config(Cfg, args(["--preset", "quick", "--lr", "0.2"]), presets)
    assert (cfg, run_dir, resume) == (Cfg(lr=0.2, epochs=1), None, False)
    run = RunDir.at(tmp_path / "r", Cfg(lr=0.3, epochs=7, name="saved"))
    cfg, run_dir, resume = run_config(Cfg, args(["--resume", str(run.path), "--epochs", "9"]), presets)
    assert cfg == Cfg(lr=0.3, epochs=9, name="saved") and resume and run_dir == run.path  # preset ignored
    with pytest.raises(DlmError, match="not a run directory"):
        run_config(Cfg, args(["--resume", str(tmp_path / "nope")]), presets)
    # the saved config is the truth: a flag that would change what is trained is refused, naming it
    before = (run.path / "config.json").read_bytes()
    with pytest.raises(DlmError, match=r"--lr 0.5 would change it \(saved: 0.3\)"):
        run_config(Cfg, args(["--resume", str(run.path), "--lr", "0.5"]), presets)
    with pytest.raises(DlmError, match="drop --preset"):
        run_config(Cfg, args(["--resume", str(run.path), "--preset", "quick"]), presets)
    assert (run.path / "config.json").read_bytes() == before
    # the same value as saved is not a change
    assert run_config(Cfg, args(["--resume", str(run.path), "--lr", "0.3"]), presets)[0].lr == 0.3


def test_resume_drops_retired_test_hooks_and_refuses_unknown_fields(tmp_path):
    """A run saved while configs still had the test-only epoch_delay resumes; any other unknown field is refused."""
    from dlm_core.config import resume_config

    args = ArgumentParser(prog="t")
    add_config_args(args, Cfg)
    given = args.parse_args([])
    saved = {**dataclasses.asdict(Cfg(lr=0.3)), "epoch_delay": 30.0}
    assert resume_config(Cfg, saved, given, tmp_path) == Cfg(lr=0.3)
    with pytest.raises(DlmError, match="does not fit this trainer's config"):
        resume_config(Cfg, {**saved, "width": 64}, given, tmp_path)
