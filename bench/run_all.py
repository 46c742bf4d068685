"""Run kubetune's benchmarks and write BENCHMARKS.md from what they measured.

    python bench/run_all.py                       # everything, full sizes (see BENCHMARKS.md)
    python bench/run_all.py --quick               # tiny sizes, a smoke test (~3 minutes)
    python bench/run_all.py throughput mfu        # chosen benchmarks only
    BENCH_DATA_SIZES=10000,100000 python bench/run_all.py data-scale   # chosen sizes
    python bench/run_all.py --report-only         # rewrite BENCHMARKS.md from bench/results/

Each benchmark saves bench/results/<name>.json (quick runs: <name>.quick.json); the
report is built from the newest full results (or quick ones with --quick), so a chosen
benchmark can be re-run without losing the others' figures.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, git_state, machine, save_result, say, stamp

NAMES = (
    "throughput", "throughput-vs", "mfu", "mfu-large", "memory", "memory-large", "operator",
    "operator-lifecycle", "checkpoint", "data-scale", "first-step",
)  # fmt: skip


def _run_one(name: str, quick: bool, reps: int | None = None) -> dict:
    if name == "throughput":
        import throughput

        return throughput.run(quick)
    if name == "throughput-vs":
        import throughput

        return throughput.run_vs(quick)
    if name in ("mfu", "mfu-large"):
        import mfu

        return mfu.run(quick, large=name == "mfu-large")
    if name in ("memory", "memory-large"):
        import memory

        return memory.run(quick, reps, large=name == "memory-large")
    if name == "operator":
        import operator_scale

        return operator_scale.run(quick)
    if name == "operator-lifecycle":
        import operator_lifecycle

        return operator_lifecycle.run(quick)
    if name == "data-scale":
        import data_scale

        return data_scale.run(quick)
    if name == "first-step":
        import first_step

        return first_step.run(quick)
    import checkpoint_io

    return checkpoint_io.run(quick)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", choices=[*NAMES, []], help="benchmarks (default: all)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repetition")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--reps", type=int, help="repetitions where a benchmark takes them (memory)")
    a = p.parse_args()
    names = a.names or list(NAMES)
    failed = []
    if not a.report_only:
        for name in names:
            say(f"== {name}{' (quick)' if a.quick else ''}")
            t0 = time.monotonic()
            state = git_state()  # at the start: commits made while it runs are not measured
            try:
                result = _run_one(name, a.quick, a.reps)
            except Exception:  # one broken benchmark must not hide the others' figures
                traceback.print_exc()
                failed.append(name)
                continue
            result["seconds"] = round(time.monotonic() - t0, 1)
            stamp(result, state)  # which code these figures measured, on which CPU
            save_result(f"{name}.quick" if a.quick else name, result)
            say(f"== {name} done in {result['seconds']:.0f} s")
    import report

    path = report.write(ROOT / "BENCHMARKS.md", machine(), quick=a.quick)
    say(f"wrote {path}")
    if failed:
        say(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
