"""Cold-start cost of an estimate with the layout search, as a ratio to importing its libraries.

    python benchmarks/cold_start.py [runs]

Runs, interleaved so that a noisy host slows all alike, a fresh interpreter that only imports
typer + PyYAML + tabulate, a fresh flat estimate (`gpucost estimate --params 7B --tokens 1T --gpu
h100 --num-gpus 64`: catalog load, arithmetic, rendering) and a fresh `gpucost estimate --model
llama-3.1-70b --gpu h100 --num-gpus 1024` (the layout search), each through the installed console
script, else `python -m estimator`. Prints the best and median wall time of each and their ratios
to the imports; the targets are at most 1.6 for the flat estimate and 2 with the layout search.

Both sides are measured as installed: `pip install .` byte-compiles the package, as it did the three
libraries, so the estimator's bytecode is compiled here first (`compileall`). Without it (an
editable install under PYTHONDONTWRITEBYTECODE=1) every run compiles the package from source, which
on a 2-core VM adds about 45 ms and measures the compiler, not the tool.
"""

from __future__ import annotations

import compileall
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPORTS = [sys.executable, "-c", "import typer, yaml, tabulate"]
_SCRIPT = Path(sys.executable).with_name("gpucost")  # the installed console script, as a user runs it
_GPUCOST = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "estimator"]
FLAT = _GPUCOST + ["estimate", "--params", "7B", "--tokens", "1T", "--gpu", "h100", "--num-gpus", "64"]
ESTIMATE = _GPUCOST + ["estimate", "--model", "llama-3.1-70b", "--gpu", "h100", "--num-gpus", "1024"]


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(runs: int = 15) -> None:
    compileall.compile_dir(ROOT / "estimator", quiet=1)
    imports, flats, estimates = [], [], []
    for _ in range(runs):
        imports.append(wall(IMPORTS))
        flats.append(wall(FLAT))
        estimates.append(wall(ESTIMATE))
    rows = (("import typer+yaml+tabulate", imports), ("flat estimate", flats), ("estimate with layout search", estimates))
    for name, times in rows:
        print(f"{name:30s} best {min(times):.3f} s, median {statistics.median(times):.3f} s")
    for name, times in rows[1:]:
        print(f"{name:30s} ratio (best / best) {min(times) / min(imports):.2f}, "
              f"(median / median) {statistics.median(times) / statistics.median(imports):.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
