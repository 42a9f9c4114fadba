"""Workflow overhead (issue 9, items 2, 3 and 6): what the workflow itself costs, next to a
baseline run side by side in this script.

    .venv/bin/python benchmarks/workflow_overhead.py [--workdir .] [--repeats 3] [--cold-wall-s S]

Needs a finished run of the default config in --workdir (`make run`). Measures, with the same
Snakemake executable and --cores 2, repeats interleaved (A B B A ...), medians:

1. the no-op re-run of the default DAG against Snakemake's no-op on a generated DAG with the same
   number of trivial jobs (one `touch` each), already run to completion;
2. the dry run of a generated 1,000-job ptmeval config (the default's models and tasks with more
   subset sizes and seeds) against the dry run of a generated 1,000-job trivial DAG;
3. regenerating the report from the cache (reports/<run>/ deleted, then a run) against the cold
   run's wall time (--cold-wall-s, as measured by `time make run`; otherwise the sum of every
   job's benchmark time, an upper bound on the cold wall time with 1 core);
4. adding one model to the finished default run: which jobs would run (counted by rule).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from ptmeval.aggregate import stage_times
from ptmeval.workflow import job_stats

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TRIVIAL = """
N = int(config["jobs"])


rule all:
    input:
        expand("out/{i}.txt", i=range(N)),


rule make:
    output:
        "out/{i}.txt",
    shell:
        "touch {output}"
"""

Row = tuple[str, float, float, float, str]  # measurement, ptmeval s, baseline s, ratio, goal


def snakemake(*args: str, cwd: Path, snakefile: Path | None = None) -> tuple[float, str]:
    """Run Snakemake; return its wall time and combined output (raises on failure)."""
    cmd = [SNAKEMAKE, "-s", str(snakefile or ROOT / "Snakefile"), "--directory", str(cwd), *args]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{result.stderr[-3000:]}")
    return elapsed, result.stdout + result.stderr


def interleaved(a, b, repeats: int) -> tuple[float, float]:
    """Medians of a() and b() timed in A B B A order."""
    times: dict[str, list[float]] = {"a": [], "b": []}
    for i in range(repeats):
        order = ("a", "b") if i % 2 == 0 else ("b", "a")
        for name in order:
            times[name].append((a if name == "a" else b)())
    return statistics.median(times["a"]), statistics.median(times["b"])


def trivial_dag(n: int, scratch: Path, run: bool) -> Path:
    work = scratch / f"trivial-{n}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "Snakefile").write_text(TRIVIAL)
    if run:
        snakemake(
            "--cores",
            "2",
            "--config",
            f"jobs={n}",
            "--quiet",
            cwd=work,
            snakefile=work / "Snakefile",
        )
    return work


def big_config(target_jobs: int, scratch: Path) -> tuple[Path, int]:
    """The default config with more subset sizes and seeds, grown until its DAG has about
    `target_jobs` jobs; returns the config file and the exact job count."""
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    path = scratch / "big.yaml"
    seeds = 2
    while True:
        data = dict(base)
        data["run_name"] = "big"
        data["subsample"] = {
            **base.get("subsample", {}),
            "fractions": [round(0.1 * k, 2) for k in range(1, 11)],
            "seeds": list(range(seeds)),
        }
        path.write_text(yaml.safe_dump(data))
        _, out = snakemake("-n", "--configfile", str(path), "--quiet", "rules", cwd=scratch)
        jobs = sum(job_stats(out).values())
        if jobs >= target_jobs or seeds > 50:
            return path, jobs
        seeds += max(1, int(seeds * (target_jobs / max(jobs, 1) - 1)))


def _finished_run_jobs(work: Path, report_dir: Path) -> int:
    """The number of jobs of the finished, up-to-date default run in `work` (exits otherwise)."""
    if not (report_dir / "index.html").exists():
        raise SystemExit(f"no finished default run in {work} (run `make run` first)")
    _, out = snakemake("-n", "--cores", "2", cwd=work)
    if "Nothing to be done" not in out:
        raise SystemExit(f"the default run in {work} is not up to date:\n{out[-2000:]}")
    _, out = snakemake("-n", "-F", "--quiet", "rules", cwd=work)
    return sum(job_stats(out).values())


def _noop_rerun(work: Path, scratch: Path, n_jobs: int, repeats: int) -> Row:
    """Measurement 1: the no-op re-run of the default DAG against a trivial DAG's."""
    trivial = trivial_dag(n_jobs, scratch, run=True)
    ours, theirs = interleaved(
        lambda: snakemake("--cores", "2", cwd=work)[0],
        lambda: snakemake(
            "--cores",
            "2",
            "--config",
            f"jobs={n_jobs}",
            cwd=trivial,
            snakefile=trivial / "Snakefile",
        )[0],
        repeats,
    )
    return (f"no-op re-run, {n_jobs} jobs", ours, theirs, ours / theirs, "≤ 1.5")


def _dry_runs(scratch: Path, repeats: int) -> Row:
    """Measurement 2: the dry run of a 1,000-job ptmeval config against a trivial DAG's."""
    big, big_jobs = big_config(1000, scratch)
    trivial_big = trivial_dag(big_jobs, scratch, run=False)
    empty = scratch / "big-run"
    empty.mkdir()
    ours, theirs = interleaved(
        lambda: snakemake("-n", "--configfile", str(big), "--quiet", cwd=empty)[0],
        lambda: snakemake(
            "-n",
            "--config",
            f"jobs={big_jobs}",
            "--quiet",
            cwd=trivial_big,
            snakefile=trivial_big / "Snakefile",
        )[0],
        repeats,
    )
    return (f"dry run, {big_jobs} jobs", ours, theirs, ours / theirs, "—")


def _jobs_for_one_more_model(work: Path, scratch: Path, config: dict) -> dict[str, int]:
    """Measurement 4: the jobs (by rule) that adding one model to the finished run would run."""
    extra = dict(config)
    extra["models"] = [
        *config["models"],
        {"slug": "tfidf-logreg-c4", "adapter": "tfidf-logreg", "finetune": {"probe_c": 4.0}},
    ]
    extra_path = scratch / "plus-one.yaml"
    extra_path.write_text(yaml.safe_dump(extra))
    _, out = snakemake("-n", "--configfile", str(extra_path), "--quiet", "rules", cwd=work)
    return job_stats(out)


def _report_from_cache(
    work: Path, report_dir: Path, repeats: int, cold_wall_s: float | None
) -> Row:
    """Measurement 3: regenerating the report from the cache against the cold run (it rewrites
    reports/<run>/)."""
    regen = []
    for _ in range(repeats):
        shutil.rmtree(report_dir)
        elapsed, out = snakemake("--cores", "2", cwd=work)
        if job_stats(out) != {"render_report": 1, "all": 1}:
            raise SystemExit(f"regenerating the report ran more than render_report:\n{out}")
        regen.append(elapsed)
    cold = cold_wall_s
    cold_note = "cold run (measured)"
    if cold is None:
        cold = stage_times((work / "results" / "benchmarks").rglob("*.tsv"))["wall_s"].sum()
        cold_note = "cold run (sum of job times)"
    median = statistics.median(regen)
    return (f"report from cache vs {cold_note}", median, cold, median / cold, "≤ 0.02")


def _print_results(rows: list[Row], repeats: int, added: dict[str, int]) -> None:
    """Print the measurements as a Markdown table, then the jobs one more model would run."""
    print(
        f"Snakemake {subprocess.run([SNAKEMAKE, '--version'], capture_output=True, text=True).stdout.strip()}, "
        f"--cores 2, medians of {repeats}\n"
    )
    print("| measurement | ptmeval s | baseline s | ratio | goal |")
    print("| --- | --- | --- | --- | --- |")
    for name, a, b, ratio, goal in rows:
        print(f"| {name} | {a:.2f} | {b:.2f} | {ratio:.3f} | {goal} |")
    print("\nAdding one model (a second TF-IDF baseline) to the finished default run would run:")
    print(
        ", ".join(f"{rule} {n}" for rule, n in added.items()),
        f"(total {sum(added.values())})",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold-wall-s", type=float, default=None)
    args = parser.parse_args()
    work = args.workdir.resolve()
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    report_dir = work / "reports" / config["run_name"]
    n_jobs = _finished_run_jobs(work, report_dir)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        rows.append(_noop_rerun(work, scratch, n_jobs, args.repeats))
        rows.append(_dry_runs(scratch, args.repeats))
        added = _jobs_for_one_more_model(work, scratch, config)
    # done last: it rewrites reports/<run>/
    rows.append(_report_from_cache(work, report_dir, args.repeats, args.cold_wall_s))
    _print_results(rows, args.repeats, added)


if __name__ == "__main__":
    main()
