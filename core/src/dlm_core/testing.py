"""Small real bundles for tests (needs torch): untrained but valid dlm-bundle/1 models of every task except
translation (p05's tests export a real one), made in seconds, so that the contract, the predictors and the
server are tested on real ONNX graphs rather than mocks."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .bundle import provenance
from .bundle_write import save_bundle

LABELS = [f"class_{i}" for i in range(10)]
WORDS = ("json parser library python module rust crate font theme icon game server client daemon kernel driver "
         "audio video codec image editor terminal shell network tool database sql backup docs manual").split()


def _export(module, example, path: Path, input_name: str, output_names: list[str], dynamic: dict):
    import torch

    torch.onnx.export(module.eval(), (example,), str(path), dynamo=True, input_names=[input_name],
                      output_names=output_names, dynamic_shapes=(dynamic,), external_data=False, verbose=False)


def _image_net(kind: str, seed: int = 0):
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                          nn.Flatten())
            self.head = nn.Linear(16, 10)
            self.decode = nn.Linear(16, 784)

        def forward(self, x):
            z = self.features(x)
            if kind == "image-classification":
                return self.head(z), z
            err = ((torch.sigmoid(self.decode(z)).view(-1, 1, 28, 28) - x) ** 2).mean((1, 2, 3))
            return err, z

    torch.manual_seed(seed)
    return Net()


def toy_image_bundle(root, task: str = "image-classification", name: str | None = None, version: str = "1",
                     seed: int = 0, weights_seed: int = 0, dataset: str = "random") -> Path:
    """A 28x28 grey classifier (logits + 16-d embedding) or anomaly detector (error + code); `weights_seed`
    gives another (random) model, `seed` other validation inputs; `dataset`: the provenance's dataset (where a
    retrain gate finds its fixed test set, e.g. fashion-mnist)."""
    import torch

    net = _image_net(task, weights_seed)
    rng = np.random.default_rng(seed)
    val = rng.integers(0, 256, (500, 28, 28)).astype(np.uint8)
    x = torch.from_numpy(((rng.integers(0, 256, (8, 1, 28, 28)) / 255.0 - 0.5) / 0.5).astype(np.float32))
    outs = ["logits", "embedding"] if task == "image-classification" else ["error", "code"]
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "m.onnx"
        _export(net, x[:2], onnx, "image", outs, {0: torch.export.Dim("batch")})
        with torch.no_grad():
            o = net(x)
        ref = {"model.in.image": x.numpy(), f"model.out.{outs[0]}": o[0].numpy(), f"model.out.{outs[1]}": o[1].numpy()}
        pre = {"type": "image", "graph_input": "image", "height": 28, "width": 28, "channels": 1, "scale": 1 / 255,
               "mean": [0.5], "std": [0.5], "layout": "NCHW", "background": "black"}
        if task == "image-classification":
            post = {"type": "softmax_topk", "graph": "model", "output": "logits", "labels": LABELS, "top_k": 3,
                    "embedding_output": "embedding"}
            metrics = {"split": "test", "headline": "accuracy", "values": {"accuracy": 0.1}}
        else:
            with torch.no_grad():
                errs = net(torch.from_numpy(((val[:, None] / 255.0 - 0.5) / 0.5).astype(np.float32)))[0].numpy()
            post = {"type": "threshold", "graph": "model", "output": "error",
                    "threshold": float(np.quantile(errs, 0.99)),
                    "higher_is_anomalous": True, "labels": ["normal", "anomaly"], "embedding_output": "code"}
            metrics = {"split": "test", "headline": "roc_auc", "values": {"roc_auc": 0.5}}
        b = save_bundle(name or f"toy-{task}", version, task=task, graphs={"model": onnx}, preprocess=pre,
                        postprocess=post, reference=ref, metrics=metrics,
                        provenance=provenance("dlm_core.testing", "none", dataset, seed, seed, {"toy": True}),
                        drift_inputs=list(val), root=root)
    return b.path


def _tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator([" ".join(WORDS)], trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"]))
    tok.save(str(path))


def toy_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(2, 9))) for _ in range(n)]


def toy_text_bundle(root, task: str = "text-classification", name: str | None = None, version: str = "1",
                    n_docs: int = 600, seed: int = 0) -> Path:
    """A bag-of-embeddings text classifier (logits + embedding) or a retriever (query embedding + a FAISS
    inner-product index over `n_docs` random documents + their store)."""
    import faiss
    import torch
    from torch import nn

    class Bag(nn.Module):
        def __init__(self, vocab: int, classes: int):
            super().__init__()
            self.emb = nn.Embedding(vocab, 16, padding_idx=0)
            self.head = nn.Linear(16, classes)

        def forward(self, ids):
            mask = (ids != 0).float()
            z = (self.emb(ids) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
            z = nn.functional.normalize(z, dim=-1, eps=1e-6)
            return (self.head(z), z) if task == "text-classification" else z

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _tokenizer(tmp / "tokenizer.json")
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tmp / "tokenizer.json"))
        net = Bag(tok.get_vocab_size(), 4).eval()
        ids = torch.tensor([[2, 3, 4, 0], [5, 6, 7, 8], [9, 0, 0, 0]])
        _export(net, ids, tmp / "m.onnx", "input_ids", ["logits", "sentence_embedding"] if task == "text-classification"
                else ["sentence_embedding"],
                {0: torch.export.Dim("batch"), 1: torch.export.Dim("length", min=2, max=64)})
        with torch.no_grad():
            o = net(ids)
        pre = {"type": "text", "graph_input": "input_ids", "tokenizer": "tokenizer.json", "max_tokens": 64,
               "pad_id": 0, "add_special_tokens": False, "truncate": True, "min_length": 2}
        files = {"tokenizer.json": tmp / "tokenizer.json"}
        if task == "text-classification":
            ref = {"model.in.input_ids": ids.numpy(), "model.out.logits": o[0].numpy(),
                   "model.out.sentence_embedding": o[1].numpy()}
            post = {"type": "softmax_topk", "graph": "model", "output": "logits", "labels": ["admin", "devel", "games",
                    "libs"], "top_k": 2, "embedding_output": "sentence_embedding"}
            metrics = {"split": "test", "headline": "accuracy", "values": {"accuracy": 0.25}}
        else:
            ref = {"model.in.input_ids": ids.numpy(), "model.out.sentence_embedding": o.numpy()}
            docs = toy_texts(n_docs, seed + 1)
            enc = np.zeros((n_docs, 64), np.int64)
            for i, e in enumerate(tok.encode_batch(docs, add_special_tokens=False)):
                enc[i, :len(e.ids)] = e.ids[:64]
            with torch.no_grad():
                emb = net(torch.from_numpy(enc)).numpy()
            index = faiss.IndexFlatIP(emb.shape[1])
            index.add(emb)
            faiss.write_index(index, str(tmp / "index.faiss"))
            (tmp / "docs.jsonl").write_text("".join(json.dumps({"id": f"pkg{i}", "synopsis": d}) + "\n"
                                                    for i, d in enumerate(docs)))
            files.update({"index.faiss": tmp / "index.faiss", "docs.jsonl": tmp / "docs.jsonl"})
            post = {"type": "knn", "graph": "model", "output": "sentence_embedding", "index": "index.faiss",
                    "documents": "docs.jsonl", "metric": "inner_product", "default_k": 5, "max_k": 50}
            metrics = {"split": "test", "headline": "ndcg@10", "values": {"ndcg@10": 0.0}}
        b = save_bundle(name or f"toy-{task}", version, task=task, graphs={"model": tmp / "m.onnx"},
                        preprocess=pre, postprocess=post, reference=ref, metrics=metrics, files=files,
                        provenance=provenance("dlm_core.testing", "none", "random", seed, seed, {"toy": True}),
                        drift_inputs=toy_texts(500, seed + 2), root=root)
    return b.path


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl from Debian's postgresql package) on a free port of
    127.0.0.1, trust-authenticated, fsync off; as root it runs as the `postgres` user (initdb refuses root)."""

    def __init__(self, folder: Path, bindir: Path, port: int, as_user: list[str]):
        self.folder, self.bindir, self.port, self.as_user, self.n = folder, bindir, port, as_user, 0

    @staticmethod
    def bindir() -> Path | None:
        import glob
        import shutil

        found = shutil.which("pg_ctl")
        if found:
            return Path(os.path.realpath(found)).parent
        dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        return Path(dirs[-1]) if dirs else None

    @classmethod
    def start_or_skip(cls) -> PostgresServer:
        import pytest

        try:
            return cls.start()
        except (FileNotFoundError, RuntimeError) as err:
            pytest.skip(f"no PostgreSQL server could be started ({err}); make test installs Debian's postgresql")

    @classmethod
    def start(cls) -> PostgresServer:
        import pwd
        import shutil
        import subprocess

        from dlm_core.net import free_port

        bindir = cls.bindir()
        if bindir is None:
            raise FileNotFoundError("pg_ctl is not installed")
        folder = Path(tempfile.mkdtemp(prefix="dlm-pg-"))
        as_user = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no postgres user") from None
            os.chown(folder, pw.pw_uid, pw.pw_gid)
            as_user = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--"]
        run = lambda *cmd: subprocess.run([*as_user, *map(str, cmd)], capture_output=True, text=True,  # noqa: E731
                                          timeout=120)
        r = run(bindir / "initdb", "-D", folder / "data", "-A", "trust", "-U", "dlm", "--no-sync", "-E", "UTF8")
        if r.returncode:
            raise RuntimeError(f"initdb failed: {r.stderr.strip()[-300:]}")
        port = free_port()
        opts = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
        r = run(bindir / "pg_ctl", "-D", folder / "data", "-o", opts, "-l", folder / "log", "-w", "-t", "60", "start")
        if r.returncode:
            raise RuntimeError(f"pg_ctl start failed: {r.stderr.strip()[-300:]} {(folder / 'log').read_text()[-300:]}")
        return cls(folder, bindir, port, as_user)

    @property
    def url(self) -> str:
        return f"postgresql://dlm@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        import psycopg

        self.n += 1
        name = f"t{os.getpid()}_{self.n}"
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return f"postgresql://dlm@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        import shutil
        import subprocess

        subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), "-m",
                        "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)
