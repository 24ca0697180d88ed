"""Every project's headline in one place: `dlm reproduce` reruns the default commands, `dlm headline` puts a
demo's quick number beside the default's.

PROJECTS below is the table: per project the README's default command(s), where the headline metric and its
baseline land in the run folder, and the numbers the README reports for them. `dlm reproduce [PROJECT...]` runs
those commands in order (each in its own folder under runs/reproduce/, artifacts too, so nothing a user made is
touched), skips projects already in results/summary.json, continues a killed trainer with `--resume`, and
writes results/summary.json + results/summary.md: metric, baseline, split, seeds, CPU and wall time, machine,
commit. `make demo` ends each project's demo with `dlm headline`, which sets its quick number beside the default's:
reproduced here when results/summary.json has the project, else the README's, saying which.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .errors import DlmError
from .git import git_commit
from .io import read_json, write_json, write_text
from .runs import runs_root


@dataclasses.dataclass(frozen=True)
class Step:
    """One default command. `{name}` in argv is the run folder of the earlier step `name`; `{here}` is this step's
    own folder (for commands that take --out). The step is done when `done_file` exists in its run folder (or in
    the run folder of step `done_in`)."""
    name: str
    argv: tuple[str, ...]
    done_file: str = "results.json"
    done_in: str | None = None
    resumable: bool = True  # a killed run continues with `--resume RUN`; otherwise it starts over
    env: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Metric:
    label: str
    key: str  # dotted key into the results file
    file: str = "results.json"
    sign: float = 1.0  # -1 where the file stores the negative of the label (an ELBO for a -ELBO)


@dataclasses.dataclass(frozen=True)
class Project:
    name: str
    shows: str  # one line: what the project demonstrates
    steps: tuple[Step, ...]
    metric: Metric
    baseline: Metric
    baseline_name: str
    headline_steps: tuple[str, ...]  # the run folders the headline is read from (several seeds: their mean)
    split: str
    seeds: str
    readme: tuple[float, float]  # (metric, baseline) as the project's README reports the default command
    readme_minutes: float  # the default command(s)' time in the README (minutes, this 2-core machine, shared)
    higher_is_better: bool = True
    fmt: str = ".4f"
    quick: tuple[Metric, Metric] | None = None  # the quick/demo run's metric and baseline, when they differ
    quick_note: str = ""  # how the demo's quick run differs from the default beyond its budget
    command: str = ""  # the default command(s) as the README writes them (default: the steps joined)

    @property
    def commands(self) -> str:
        return self.command or "; ".join(" ".join(s.argv) for s in self.steps)


ONE_THREAD = (("DLM_THREADS", "1"),)


def _seeds(cli: str, seeds, *extra: str, env=ONE_THREAD) -> tuple[Step, ...]:
    return tuple(Step(f"seed{s}", (cli, *extra, "--seed", str(s)), env=env) for s in seeds)


PROJECTS: tuple[Project, ...] = (
    Project("p01_autodiff", "a numpy reverse-mode autodiff engine trains an MLP; every gradient checked against torch",
            (Step("default", ("run_autodiff_demo",)),),
            Metric("test accuracy", "test_accuracy"), Metric("", "baseline_logreg_test_accuracy"),
            "logistic regression", ("default",), "sklearn digits 1079/359/359", "0", (0.9889, 0.9666), 0.1),
    Project("p02_optimizers", "SGD, momentum, RMSprop, Adam as a few lines of numpy; paths, sweeps, sharpness",
            (Step("landscape", ("run_loss_landscape",)),),
            Metric("Adam test accuracy (MLP)", "adam.test_acc"), Metric("", "baseline_logreg_test_acc"),
            "logistic regression", ("landscape",), "sklearn digits 1079/359/359", "0", (0.9721, 0.9666), 1.5),
    Project("p03_cnn", "a small ResNet on Fashion-MNIST with augmentation, OneCycle, early stopping",
            (Step("default", ("run_cnn_train",)),),
            Metric("test accuracy", "test_acc"), Metric("", "baseline_logreg_test_acc"),
            "logistic regression", ("default",), "Fashion-MNIST official test (10,000)", "0", (0.9403, 0.8448),
            13.2),
    Project("p04_rnn", "a character LSTM on Shakespeare, bits per character against a Kneser-Ney 5-gram",
            (Step("default", ("run_rnn_train",)),),
            Metric("test bits per char", "test_bpc"), Metric("", "kn_test_bpc"),
            "Kneser-Ney 5-gram", ("default",), "contiguous 5% test split (49,667 chars)", "0", (1.989, 2.152), 30.0,
            higher_is_better=False, fmt=".3f"),
    Project("p05_transformer", "an encoder-decoder transformer translates English to Spanish (Bible verses)",
            _seeds("run_transformer_train", (0, 1, 2)),
            Metric("test BLEU", "test_bleu"), Metric("", "baselines.ibm_model1.bleu"),
            "IBM Model 1", ("seed0", "seed1", "seed2"), "1,000 test pairs (beam 4)", "0, 1, 2", (24.58, 9.91), 3 * 43.0,
            fmt=".2f", quick_note="200 test pairs, beam 2",
            command="DLM_THREADS=1 run_transformer_train --seed 0/1/2 (~43 CPU-min each)"),
    Project("p06_contrastive", "InfoNCE text embeddings (ensemble of 3) and FAISS search over Debian packages",
            (*_seeds("run_contrastive_train", (0, 1, 2)),
             Step("ensemble", ("run_contrastive_ensemble", "{seed0}", "{seed1}", "{seed2}", "--out", "{here}"),
                  done_file="ensemble.json", resumable=False),
             Step("evaluate", ("run_retrieval_evaluate", "{ensemble}"), done_file="eval_test.json",
                  done_in="ensemble", resumable=False)),
            Metric("test nDCG@10 (dense)", "metrics.dense.ndcg@10", "eval_test.json"),
            Metric("", "metrics.bm25.ndcg@10", "eval_test.json"), "BM25", ("ensemble",),
            "2,000 test queries vs 54,067 documents", "0, 1, 2 (one ensemble)", (0.7041, 0.6931), 3 * 18.0 + 6,
            quick_note="a 4,000-document corpus",
            command="run_contrastive_train --seed 0/1/2, run_contrastive_ensemble, run_retrieval_evaluate"),
    Project("p07_autoencoder", "conv autoencoders flag anomalies by reconstruction error (10 one-class tasks)",
            (Step("all-classes", ("run_anomaly_train", "--dataset", "fashion-oneclass", "--preset", "sweep",
                                  "--all-classes", "--seed", "0"), done_file="summary.json", resumable=False,
                  env=ONE_THREAD),),
            Metric("mean ROC-AUC over 10 classes", "mean_roc_auc.autoencoder", "summary.json"),
            Metric("", "mean_roc_auc.isolation_forest", "summary.json"), "IsolationForest", ("all-classes",),
            "Fashion-MNIST official test (1,000 normal, 9,000 anomalies per class)", "0", (0.9377, 0.9169), 9.4,
            quick=(Metric("ROC-AUC", "autoencoder.roc_auc"), Metric("", "isolation_forest.roc_auc")),
            quick_note="one class (sneakers)"),
    Project("p08_vae", "a VAE on binarised MNIST digits: samples, interpolation, ELBO and IWAE likelihood",
            (Step("default", ("run_vae_train",)),),
            Metric("test NLL (IWAE, nats)", "test_nll_iwae"), Metric("", "baseline_factorised_bernoulli_nll"),
            "per-pixel Bernoulli", ("default",), "mnist10k test (1,000; IWAE k=256)", "0", (94.1, 203.2), 3.0,
            higher_is_better=False, fmt=".1f",  # the quick run's IWAE covers 200 easy test images: use its bound
            quick=(Metric("test -ELBO (all 1,000 test images)", "test_elbo", sign=-1.0),
                   Metric("", "baseline_factorised_bernoulli_nll"))),
    Project("p09_dqn", "Double DQN learns to balance CartPole: replay buffer, target network, epsilon-greedy",
            _seeds("run_dqn_train", (1, 2, 3)),
            Metric("greedy test return", "test_mean"), Metric("", "random_mean"),
            "random policy", ("seed1", "seed2", "seed3"), "100 test episodes on their own seeds", "1, 2, 3",
            (499.8, 21.9), 3 * 3.0, fmt=".1f", command="run_dqn_train --seed 1/2/3",
            quick_note="12k steps, 20 test episodes"),
)
BY_NAME = {p.name: p for p in PROJECTS}


def project(name: str) -> Project:
    name = name.rstrip("/")
    matches = [p for p in PROJECTS if p.name == name or p.name.split("_")[0] == name]
    if not matches:
        raise DlmError(f"unknown project {name!r}: use one of {', '.join(p.name for p in PROJECTS)}")
    return matches[0]


def lookup(obj: dict, metric: Metric) -> float:
    for part in metric.key.split("."):
        if not isinstance(obj, dict) or part not in obj:
            raise DlmError(f"key {metric.key!r} not found in {metric.file}")
        obj = obj[part]
    return metric.sign * float(obj)


def fmt(p: Project, v: float) -> str:
    return format(v, p.fmt)


def duration(minutes: float) -> str:
    return f"{minutes * 60:.0f} s" if minutes < 1 else f"{minutes:.0f} min"


# ---------------------------------------------------------------------------------------------------------------
# where things are


def repo_root() -> Path:
    """The monorepo (dlm_core installed editable from core/src), else the current folder."""
    tree = Path(__file__).resolve().parents[3]
    return tree if (tree / "core" / "pyproject.toml").is_file() else Path.cwd()


def results_dir() -> Path:
    return Path(os.environ.get("DLM_RESULTS", repo_root() / "results"))


def work_dir() -> Path:
    return runs_root() / "reproduce"


def step_dir(p: Project, step: Step) -> Path:
    return work_dir() / p.name / step.name


def run_dir_of(p: Project, step: Step) -> Path | None:
    """The run folder a step made: the step folder itself (commands given --out {here}) or the one run under it."""
    d = step_dir(p, step)
    if (d / "config.json").is_file() or (d / step.done_file).is_file():
        return d
    found = sorted(d.glob("*/*/config.json"))
    return found[-1].parent if found else None


def step_done(p: Project, step: Step) -> bool:
    where = step if step.done_in is None else next(s for s in p.steps if s.name == step.done_in)
    run = run_dir_of(p, where)
    return run is not None and (run / step.done_file).is_file()


def load_summary() -> dict:
    path = results_dir() / "summary.json"
    return read_json(path) if path.is_file() else {"schema": "dlm-summary/1", "projects": {}}


# ---------------------------------------------------------------------------------------------------------------
# running


@dataclasses.dataclass
class Running:
    step: Step
    proc: subprocess.Popen
    log: Path
    t0: float


def depends_on(p: Project, step: Step) -> set[str]:
    """The earlier steps whose run folders this step's command names (or whose folder it finishes in)."""
    names = {s.name for s in p.steps}
    refs = {m for a in step.argv for m in re.findall(r"\{(\w+)\}", a)} & names
    return refs | ({step.done_in} if step.done_in else set())


def launch_step(p: Project, step: Step) -> Running:
    """Start (or continue) one step as a child process, its output into its folder's log.txt."""
    d = step_dir(p, step)
    # each step its own artifacts folder: bundles are named after their run's start second, and steps started
    # side by side (--jobs) start in the same second
    env = {**os.environ, **dict(step.env), "DLM_RUNS": str(d),
           "DLM_ARTIFACTS": str(work_dir() / "artifacts" / p.name / step.name), "DLM_NO_PROGRESS": "1"}
    folders = {"here": d, **{s.name: r for s in p.steps if (r := run_dir_of(p, s)) is not None}}
    argv = [re.sub(r"\{(\w+)\}", lambda m: str(folders.get(m.group(1), m.group(0))), a) for a in step.argv]
    previous = run_dir_of(p, step)
    if previous is not None and step.resumable and (previous / "checkpoints").is_dir() \
            and any((previous / "checkpoints").iterdir()):
        argv = [argv[0], "--resume", str(previous)]  # a killed run: continue it with its own saved config
        print(f"   continuing the killed run {previous}", flush=True)
    elif previous is not None or d.exists():
        shutil.rmtree(d)  # a half-made step that cannot resume starts over
    d.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).parent / argv[0]  # the console script of this same environment
    if not exe.is_file() and shutil.which(argv[0]) is None:
        raise DlmError(f"{argv[0]} is not installed; run `make install` (it installs every project)")
    argv[0] = str(exe) if exe.is_file() else argv[0]
    log = d / "log.txt"
    print(f"   $ {' '.join([step.argv[0], *argv[1:]])}   (log: {log})", flush=True)
    with open(log, "a") as f:
        proc = subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT)
    return Running(step, proc, log, time.perf_counter())


def record_time(p: Project, r: Running, cpu_s: float) -> dict:
    """Add an attempt's CPU (its process tree's user + sys) and wall seconds to the step's timing.json: every
    attempt counts, a failed or stopped one too, so a resumed step's total is what it cost."""
    times = step_dir(p, r.step) / "timing.json"
    prior = read_json(times) if times.is_file() else {"cpu_s": 0.0, "wall_s": 0.0, "attempts": 0}
    total = {"cpu_s": prior["cpu_s"] + cpu_s, "wall_s": prior["wall_s"] + time.perf_counter() - r.t0,
             "attempts": prior["attempts"] + 1}
    write_json(times, total)
    return total


def finish_step(p: Project, r: Running, rc: int, cpu_s: float) -> dict:
    """Record a finished step's time, then check that it succeeded and wrote its done file."""
    step, total = r.step, record_time(p, r, cpu_s)
    if rc != 0:
        tail = "".join(r.log.read_text(errors="replace").splitlines(keepends=True)[-5:])
        raise DlmError(f"{p.name} step {step.name} failed (exit {rc}); its log {r.log} ends with:\n{tail}")
    if not step_done(p, step):
        raise DlmError(f"{p.name} step {step.name} exited 0 but wrote no {step.done_file}; see {r.log}")
    return total


def run_steps(p: Project, jobs: int = 1) -> None:
    """Run a project's unfinished steps, up to `jobs` side by side (a step starts once the steps it names are
    done; with jobs 1 they run one after the other, in order). Each step's CPU seconds come from wait4 on its
    own process, so steps running together are still timed apart. A failure stops the others (they resume)."""
    finished = {s.name for s in p.steps if step_done(p, s)}
    for s in p.steps:
        if s.name in finished:
            print(f"   {s.name}: done before", flush=True)
    pending = [s for s in p.steps if s.name not in finished]
    running: dict[int, Running] = {}
    try:
        while pending or running:
            for s in [s for s in pending if not depends_on(p, s) - finished][:max(0, jobs - len(running))]:
                r = launch_step(p, s)
                running[r.proc.pid] = r
                pending.remove(s)
            if not running:
                raise DlmError(f"{p.name}: steps {[s.name for s in pending]} wait on steps that never ran")
            pid, status, usage = os.wait4(-1, 0)
            r = running.pop(pid, None)
            if r is None:  # not one of ours
                continue
            r.proc.returncode = rc = os.waitstatus_to_exitcode(status)
            t = finish_step(p, r, rc, usage.ru_utime + usage.ru_stime)
            finished.add(r.step.name)
            print(f"   {r.step.name}: {t['wall_s'] / 60:.1f} min wall, {t['cpu_s'] / 60:.1f} CPU-min", flush=True)
    finally:
        for r in running.values():  # after a failure or ^C: stop the rest (a later reproduce continues them)
            r.proc.terminate()
            _, status, usage = os.wait4(r.proc.pid, 0)
            r.proc.returncode = os.waitstatus_to_exitcode(status)
            record_time(p, r, usage.ru_utime + usage.ru_stime)


def headline_of(p: Project, metric: Metric, steps: tuple[str, ...]) -> list[float]:
    by_name = {s.name: s for s in p.steps}
    values = []
    for name in steps:
        run = run_dir_of(p, by_name[name])
        values.append(lookup(read_json(run / metric.file), metric))
    return values


def summarize(p: Project) -> dict:
    """The summary entry of a finished project, read from its run folders."""
    from .benchmark import machine

    values, base = headline_of(p, p.metric, p.headline_steps), headline_of(p, p.baseline, p.headline_steps)
    cpu = wall = 0.0
    for s in p.steps:
        t = step_dir(p, s) / "timing.json"
        if t.is_file():
            tj = read_json(t)
            cpu, wall = cpu + tj["cpu_s"], wall + tj["wall_s"]
    mean, base_mean = sum(values) / len(values), sum(base) / len(base)
    better = mean > base_mean if p.higher_is_better else mean < base_mean
    return {"shows": p.shows, "metric": p.metric.label, "value": mean, "per_run": values,
            "baseline_name": p.baseline_name, "baseline": base_mean, "beats_baseline": better,
            "higher_is_better": p.higher_is_better, "split": p.split, "seeds": p.seeds,
            "commands": [" ".join(s.argv) for s in p.steps], "cpu_minutes": round(cpu / 60, 2),
            "wall_minutes": round(wall / 60, 2), "readme": {"value": p.readme[0], "baseline": p.readme[1]},
            "machine": machine(), "commit": git_commit(repo_root()),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S")}


def remaining_minutes(todo: list[Project], done_ratio: float) -> float:
    return sum(p.readme_minutes for p in todo) * done_ratio


def reproduce(names: list[str], force: bool = False, jobs: int = 1) -> dict:
    chosen = [project(n) for n in names] if names else list(PROJECTS)
    summary = load_summary()
    todo = [p for p in chosen if force or p.name not in summary["projects"]]
    for p in chosen:
        if p not in todo:
            print(f"== {p.name}: done before (results/summary.json, commit {summary['projects'][p.name]['commit']}); "
                  "skipped (--force reruns it)", flush=True)
    ratio, measured, expected = 1.0, 0.0, 0.0  # actual / README minutes so far, to scale the estimate
    for i, p in enumerate(todo):
        left = remaining_minutes(todo[i:], ratio)
        print(f"== [{i + 1}/{len(todo)}] {p.name}: {len(p.steps)} step(s), ~{duration(p.readme_minutes * ratio)}; "
              f"~{duration(left)} left in all", flush=True)
        if force:
            shutil.rmtree(work_dir() / p.name, ignore_errors=True)
        t0 = time.perf_counter()
        run_steps(p, jobs)
        entry = summarize(p)
        if jobs > 1:  # the steps' wall minutes overlap: say so, and how long the project took end to end
            entry.update(jobs=jobs, elapsed_minutes=round((time.perf_counter() - t0) / 60, 2))
        summary = load_summary()  # another reproduce may have added projects meanwhile
        summary["projects"][p.name] = entry
        write_summary(summary)
        measured += (time.perf_counter() - t0) / 60
        expected += p.readme_minutes
        ratio = min(max(measured / expected, 0.25), 4.0)  # this machine's pace vs the README's, bounded
        verdict = "beats" if entry["beats_baseline"] else "does NOT beat"
        print(f"   {p.name}: {p.metric.label} {fmt(p, entry['value'])} ({verdict} {p.baseline_name} "
              f"{fmt(p, entry['baseline'])}; README {fmt(p, p.readme[0])})", flush=True)
    return load_summary()


# ---------------------------------------------------------------------------------------------------------------
# reports


def headline_source(p: Project, summary: dict) -> tuple[float, float, str]:
    """(metric, baseline, where from): reproduced here if the summary has it, else the README's."""
    e = summary["projects"].get(p.name)
    if e is not None:
        return e["value"], e["baseline"], f"reproduced here, commit {e['commit']}"
    return p.readme[0], p.readme[1], f"{p.name}/README.md"


def wall_cell(e: dict) -> str:
    if "elapsed_minutes" not in e:
        return f"{e['wall_minutes']:.1f}"
    return f"{e['elapsed_minutes']:.1f} ({e['jobs']} steps side by side; {e['wall_minutes']:.1f} added up)"


def summary_markdown(summary: dict) -> str:
    rows = ["| project | what it shows | headline (default command) | baseline | split | seeds | CPU min | wall min "
            "| commit |", "|---|---|---|---|---|---|---|---|---|"]
    for p in PROJECTS:
        e = summary["projects"].get(p.name)
        if e is None:
            rows.append(f"| {p.name} | {p.shows} | not reproduced yet (README: {p.metric.label} "
                        f"{fmt(p, p.readme[0])}) | {p.baseline_name} {fmt(p, p.readme[1])} | {p.split} | {p.seeds} "
                        "| | | |")
            continue
        rows.append(f"| {p.name} | {p.shows} | {p.metric.label} **{fmt(p, e['value'])}** | {e['baseline_name']} "
                    f"{fmt(p, e['baseline'])} | {e['split']} | {e['seeds']} | {e['cpu_minutes']:.1f} | "
                    f"{wall_cell(e)} | {e['commit']} |")
    machines = sorted({f"{e['machine'].get('cpu')} ({e['machine'].get('cores')} cores)"
                       for e in summary["projects"].values()})
    return ("# Reproduced headlines (`dlm reproduce`)\n\nEach row is the project's default command(s) from its "
            "README, rerun by `make reproduce` (runs under runs/reproduce/). CPU minutes count every thread of the "
            "child processes; wall minutes depend on the machine's load.\n\n" + "\n".join(rows) + "\n\n"
            + ("Machine: " + "; ".join(machines) + "\n" if machines else ""))


TABLE_START, TABLE_END = "<!-- generated by `dlm reproduce --table` -->\n", "\n<!-- end of generated table -->"


def write_summary(summary: dict) -> None:
    write_json(results_dir() / "summary.json", summary)
    write_text(results_dir() / "summary.md", summary_markdown(summary))
    readme = repo_root() / "README.md"
    if results_dir() == repo_root() / "results" and readme.is_file():  # the tree's own summary: refresh its table
        text = readme.read_text()
        if TABLE_START in text and TABLE_END in text:
            i, j = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
            write_text(readme, text[:i] + readme_table(summary) + text[j:])


def readme_table(summary: dict) -> str:
    """The root README's "what each project shows" table: the headline, from the summary where reproduced."""
    rows = ["| project | what it shows | headline (default command) | baseline | source |", "|---|---|---|---|---|"]
    for p in PROJECTS:
        value, base, source = headline_source(p, summary)
        rows.append(f"| [{p.name}]({p.name}/README.md) | {p.shows} | {p.metric.label} **{fmt(p, value)}** | "
                    f"{p.baseline_name} {fmt(p, base)} | {source} |")
    return "\n".join(rows)


def quick_line(p: Project, run: Path, seconds: float | None, summary: dict | None = None) -> str:
    """One line for `make demo`: the quick run's number beside the default command's and the baselines."""
    summary = summary if summary is not None else load_summary()
    metric, baseline = p.quick or (p.metric, p.baseline)
    q, qb = lookup(read_json(run / metric.file), metric), lookup(read_json(run / baseline.file), baseline)
    d, db, source = headline_source(p, summary)
    better = (lambda a, b: a > b) if p.higher_is_better else (lambda a, b: a < b)
    took = f" ({seconds:.0f} s)" if seconds is not None else ""
    note = f", {p.quick_note}" if p.quick_note else ""
    return (f"{p.name} quick{took}{note}: {metric.label} {fmt(p, q)} vs "
            f"{p.baseline_name} {fmt(p, qb)} ({'wins' if better(q, qb) else 'LOSES'}) | default (~"
            f"{duration(p.readme_minutes)} here, {p.commands}): {p.metric.label} {fmt(p, d)} vs {p.baseline_name} "
            f"{fmt(p, db)} ({'wins' if better(d, db) else 'LOSES'}; {source})")


# ---------------------------------------------------------------------------------------------------------------
# CLI (wired into `dlm` by cli.py)


def cmd_reproduce(args) -> int:
    if args.list:
        for p in PROJECTS:
            print(f"{p.name}: ~{duration(p.readme_minutes)}; " + "; ".join(" ".join(s.argv) for s in p.steps))
        return 0
    if args.table:
        print(readme_table(load_summary()))
        return 0
    if args.jobs < 1:
        raise DlmError(f"--jobs {args.jobs}: give 1 or more (steps run side by side within a project)")
    summary = reproduce(args.projects, force=args.force, jobs=args.jobs)
    print(f"summary: {results_dir() / 'summary.md'} ({len(summary['projects'])} project(s))")
    return 0


def cmd_headline(args) -> int:
    run = Path(args.run)
    if not run.is_dir():
        raise DlmError(f"{run} is not a run folder; give the quick run's folder")
    print(quick_line(project(args.project), run, args.seconds), flush=True)
    return 0


def add_parsers(sub) -> None:
    r = sub.add_parser("reproduce", help="rerun every project's default command(s); results/summary.{md,json}")
    r.add_argument("projects", nargs="*", help="projects to run, e.g. p01_autodiff p02 (default: all, in order)")
    r.add_argument("--force", action="store_true", help="rerun projects already in results/summary.json")
    r.add_argument("--jobs", type=int, default=1,
                   help="run up to N of a project's independent steps side by side (e.g. p05's three one-thread "
                        "seeds on 2 cores: --jobs 3); CPU minutes stay per step, wall minutes are then added "
                        "up and the project's elapsed minutes are recorded beside them")
    r.add_argument("--list", action="store_true", help="print each project's commands and expected minutes")
    r.add_argument("--table", action="store_true", help="print the root README's project table and exit")
    r.set_defaults(func=cmd_reproduce)
    h = sub.add_parser("headline", help="one line: a quick run's number beside the default command's (make demo)")
    h.add_argument("project", help="e.g. p05_transformer")
    h.add_argument("run", help="the quick run's folder")
    h.add_argument("--seconds", type=float, default=None, help="how long the quick demo took")
    h.set_defaults(func=cmd_headline)
