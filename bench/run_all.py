"""make bench: run every benchmark, each printing one JSON line per figure.

Needs PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/prefstudio_bench);
the database is dropped and recreated.
"""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

RUNS = [
    # Two manifest lengths, so the memory figure shows whether it grows with the manifest.
    ["import_bench.py", "--fresh-database", "--lines", "25000"],
    ["import_bench.py", "--lines", "100000"],
    ["annotator_loop_bench.py", "--sizes", "10000,1000000"],
    ["crowd_bench.py"],
    ["crowd_bench.py", "--submit-batch", "1"],
    ["browser_paint_bench.py"],
    ["curation_bench.py"],
    ["report_page_bench.py"],  # the filter-run report page of a 1,000,000-judgment run, server and Chromium
    ["curation_defaults_bench.py"],
    ["adaptive_collection_bench.py"],  # issue 16: adaptive against fixed overlap 5 on simulated crowds
    ["adaptive_platform_bench.py"],  # the same through the platform's own lease, submit, refresh and filter runs
    ["export_bench.py"],
    # Right after an import, without a manual ANALYZE: the figure at 50,400 comparisons, and the
    # issue's scale with the platform's statistics refresh and without it (before the fix).
    ["fresh_project_bench.py"],
    ["fresh_project_bench.py", "--prompts", "500"],
    ["fresh_project_bench.py", "--prompts", "500", "--no-statistics-refresh"],
    ["gpu_scoring.py"],  # on a machine without CUDA it runs its CPU smoke run and says so
]


def main() -> int:
    failed = 0
    for run in RUNS:
        result = subprocess.run([sys.executable, str(HERE / run[0]), *run[1:]], cwd=HERE)
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
