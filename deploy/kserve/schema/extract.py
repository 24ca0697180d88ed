"""Regenerate inferenceservice-v1beta1.schema.json from KServe's CRD:

    curl -LO https://raw.githubusercontent.com/kserve/kserve/v0.20.0/config/crd/full/serving.kserve.io_inferenceservices.yaml
    python deploy/kserve/schema/extract.py serving.kserve.io_inferenceservices.yaml v0.20.0 COMMIT

It keeps the v1beta1 openAPIV3Schema as it is (no key added, dropped or changed) and records where it came from
in a root "$comment" (a keyword JSON Schema validators ignore)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import yaml

PATH = "config/crd/full/serving.kserve.io_inferenceservices.yaml"


def main(crd_file: str, tag: str, commit: str) -> None:
    raw = Path(crd_file).read_bytes()
    crd = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == "InferenceService"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    comment = (f"openAPIV3Schema of InferenceService {version['name']} from KServe {tag} (commit {commit}), "
               f"https://github.com/kserve/kserve/blob/{tag}/{PATH} "
               f"(sha256 {hashlib.sha256(raw).hexdigest()}), extracted unchanged by deploy/kserve/schema/extract.py")
    schema = {"$comment": comment, **version["schema"]["openAPIV3Schema"]}
    out = Path(__file__).with_name("inferenceservice-v1beta1.schema.json")
    out.write_text(json.dumps(schema, indent=0, ensure_ascii=False) + "\n")
    print(f"{out}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main(*sys.argv[1:])
