"""Fault injection: SIGKILL Snakemake at seeded random moments while it runs the e2e config —
every other time the whole process tree, else Snakemake alone, whose jobs must then stop by
themselves (ptmeval.stopping) — re-run after each kill, and check that the end state equals an
uninterrupted run, no Parquet file is unreadable, and no finished job was recomputed. The
killed runs use the e2e config with one seed and its text task (every rule, 6 of its 16
fine-tunes); their results equal the e2e run's rows for them."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, SNAKEMAKE, job_file, run_snakemake
from tests.e2e.conftest import one_seed_config, one_seed_rows
from tests.system import alive, children

pytestmark = pytest.mark.slow
CONFIG = REPO / "tests" / "e2e" / "config.yaml"
KILLS = 6  # 3 of the whole tree, 3 of Snakemake alone (each kill + check costs ~40 s)
SEED = 20261123
DETERMINISTIC = [
    "model",
    "task",
    "fraction",
    "seed",
    "init",
    "method",
    "n_train",
    "metric",
    "value",
]


def finished_outputs(work: Path, config: Path) -> dict[Path, int]:
    """Outputs Snakemake considers complete and up to date, with their mtimes. The summary's
    status says 'ok' for any file that exists, even one a killed job left incomplete; its plan
    column ('no update') does not look at Snakemake's incomplete markers either, so a job that
    finished writing after its Snakemake was killed reads 'no update' although Snakemake, which
    never saw it end, runs it again. Only what a dry run does not plan is finished."""
    result = run_snakemake("--cores", "2", "--configfile", str(config), "--summary", cwd=work)
    plan = run_snakemake("-n", "--cores", "2", "--configfile", str(config), cwd=work)
    assert plan.returncode == 0, plan.stderr[-2000:]
    planned = {
        work / name
        for line in (plan.stdout + plan.stderr).splitlines()
        if line.startswith("    output: ")
        for name in line.removeprefix("    output: ").split(", ")
    }
    done = {}
    for line in result.stdout.splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) >= 6 and fields[4] == "ok" and fields[5] == "no update":
            path = work / fields[0]
            if path.is_file() and path not in planned:
                done[path] = path.stat().st_mtime_ns
    return done


def test_sigkill_at_random_moments_then_resume(tmp_path, e2e_workdir):
    rng = random.Random(SEED)
    config = one_seed_config(tmp_path)
    kills, protected, left_behind = 0, {}, 0
    start = time.time()
    while kills < KILLS and time.time() - start < 1500:
        proc = subprocess.Popen(
            [
                SNAKEMAKE,
                "-s",
                str(REPO / "Snakefile"),
                "--directory",
                str(tmp_path),
                "--cores",
                "2",
                "--configfile",
                str(config),
                "--quiet",
            ],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        delay = rng.uniform(4.0, 30.0)
        try:
            proc.wait(timeout=delay)
            break  # it finished before the kill: the run is complete
        except subprocess.TimeoutExpired:
            if kills % 2:  # Snakemake alone: its jobs must notice and stop themselves
                jobs = children(proc.pid)
                left_behind += len(jobs)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                deadline = time.time() + 180  # a fine-tune first checkpoints its current step
                while time.time() < deadline and any(alive(pid) for pid in jobs):
                    time.sleep(0.5)
                assert not any(alive(pid) for pid in jobs), "a job outlived its Snakemake"
            else:
                os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and every job it started
                proc.wait()
            kills += 1
        unlock = run_snakemake("--unlock", "--configfile", str(config), cwd=tmp_path)
        assert unlock.returncode == 0, unlock.stderr[-2000:]
        protected.update(finished_outputs(tmp_path, config))
    assert kills >= KILLS, f"only {kills} kills happened before the run finished"
    assert left_behind > 0, "no kill of Snakemake alone left a running job behind"
    final = run_snakemake("--cores", "2", "--configfile", str(config), cwd=tmp_path)
    assert final.returncode == 0, final.stderr[-4000:]
    # nothing finished before a kill was computed again
    recomputed = [
        p for p, mtime in protected.items() if p.exists() and p.stat().st_mtime_ns != mtime
    ]
    assert recomputed == [], [str(p.relative_to(tmp_path)) for p in recomputed[:5]]
    # every cached table is readable
    for path in (tmp_path / "results").rglob("*.parquet"):
        pq.read_table(path)
    # and the end state equals the uninterrupted run's
    ours = pd.read_parquet(tmp_path / "results/aggregate/e2e/results.parquet")[DETERMINISTIC]
    theirs = pd.read_parquet(e2e_workdir / "results/aggregate/e2e/results.parquet")[DETERMINISTIC]
    theirs = one_seed_rows(theirs)
    key = DETERMINISTIC[:-1]
    pd.testing.assert_frame_equal(
        ours.sort_values(key).reset_index(drop=True), theirs.sort_values(key).reset_index(drop=True)
    )
    assert not any((tmp_path / "results" / "checkpoints").rglob("state.json"))


def test_truncated_cache_file_is_named_and_recomputed_with_its_dependants(tmp_path, e2e_workdir):
    import shutil

    work = tmp_path / "copy"
    shutil.copytree(e2e_workdir, work, symlinks=True)
    victim = job_file(work, "subsample/digits/1/0", "train.parquet")
    name = str(victim.relative_to(work))  # results/subsample/digits/1/0/<key>/train.parquet
    victim.write_bytes(victim.read_bytes()[:100])
    result = run_snakemake("--cores", "2", "--configfile", str(CONFIG), cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"'{name}' is damaged (truncated?); moved to" in result.stderr
    from tests.conftest import job_stats

    stats = job_stats(result.stderr + result.stdout)
    # the subset, the jobs that read it (digits, fraction 1, seed 0: the probe's C selection,
    # which every digits probe reads, the fine-tune itself, and the frozen-feature probes of the
    # protocol check) and what follows; nothing of bbc-news
    assert stats["subsample"] == 1 and stats["select_hparams"] == 1
    assert stats["finetune"] == 4 and stats["evaluate"] == 4 and stats["transfer_scores"] == 1
    assert "download_model" not in stats and "prepare_task" not in stats
    assert (work / name.replace("results/", "results/.damaged/")).exists()  # kept, not deleted
    pq.read_table(victim)
