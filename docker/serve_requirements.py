"""Print the serving image's pip requirements: what dlm_core (with its `serve` extra) and p10_serving declare,
at requirements.txt's pins. Fails when a dependency has no pin or when torch would come in.

p10_serving's `tools` extra (run_loadtest, run_fullstack, drift calibration: httpx, matplotlib, ...) is NOT
installed: only p10_serving's own dependencies are. A tools package still comes in when dlm_core itself depends
on it (matplotlib, a dlm_core dependency); the others (httpx) are not in the image, and the tools' console
scripts, installed with the package, fail there on their first import of them.

    python3 docker/serve_requirements.py [REPO_ROOT] > serve-requirements.txt
"""

import re
import sys
import tomllib
from pathlib import Path


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(root: Path) -> int:
    pins = {}
    for line in (root / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            pins[norm(line.split("==")[0])] = line
    core = tomllib.loads((root / "core" / "pyproject.toml").read_text())["project"]
    p10 = tomllib.loads((root / "p10_serving" / "pyproject.toml").read_text())["project"]
    wanted = core["dependencies"] + core["optional-dependencies"]["serve"] + p10["dependencies"]
    names = sorted({norm(re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0]) for d in wanted} - {"dlm-core"})
    # p10's own extras (`tools`) are left out on purpose: nothing the server imports may need them. An extra
    # asked for inside a dependency (dlm-core[torch]) would be dropped here without a word: refuse it
    if any("[" in d for d in p10["dependencies"]):
        print("serve_requirements: p10_serving's dependencies must not name extras", file=sys.stderr)
        return 1
    if {"torch", "torchvision"} & set(names):
        print("serve_requirements: torch is among the serving dependencies", file=sys.stderr)
        return 1
    missing = [n for n in names if n not in pins]
    if missing:
        print(f"serve_requirements: no pin in requirements.txt for {', '.join(missing)}", file=sys.stderr)
        return 1
    print("\n".join(pins[n] for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])))
