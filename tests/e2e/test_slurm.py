"""The e2e DAG (one seed, the text task: every rule, 6 of its 16 fine-tunes) through
`--profile profiles/slurm` on a real single-node SLURM cluster.

A module fixture needs slurm-wlm and munge (installed by `make test`: target system-packages),
starts munged, slurmctld and slurmd on private ports with a generated slurm.conf in a temporary
directory, and stops them by PID afterwards. One SLURM run of tests/e2e/config.yaml follows;
while it runs, a background thread `scancel`s the grouped SLURM job in which a MiniLM fine-tune
is training. The tests then check that the jobs really went through SLURM in the profile's
groups (and the local rules did not), that the cancelled group was retried, and that the final
tables equal the local e2e run's rows for them.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ptmeval.workflow import without_shown_logs
from tests.conftest import REPO, job_stats, run_snakemake
from tests.e2e.conftest import TEXT_TASK, one_seed_config, one_seed_rows
from tests.system import require_debian_packages

pytestmark = pytest.mark.slow

PROFILE = REPO / "profiles" / "slurm"
LOCAL_RULES = {"aggregate", "render_report", "all"}
INITS = ("pretrained", "scratch")
KEYS = ["model", "task", "fraction", "seed", "init", "method", "n_train", "metric"]
# The profile's groups (profiles/slurm/config.yaml) and what the e2e DAG makes of them: one
# SLURM job per group of components — `train`: 6 fine-tunes, each with its evaluation, 4 per
# SLURM job; `prep`: the task's preparation and subsets; `light`: transfer scores and the
# estimate — and one SLURM job for each of the other 9 jobs.
GROUPS = {"train": {"finetune", "evaluate"}, "prep": {"prepare_task", "subsample"}}
GROUPS["light"] = {"transfer_scores", "estimate_cost"}
GROUP_SUBMISSIONS = {"train": 2, "prep": 1, "light": 1}
SINGLE_SUBMISSIONS = {
    "download_model": 1,
    "profile_model": 1,
    "measure_runtime": 2,  # the TF-IDF baseline's too
    "extract_features": 1,
    "select_hparams": 3,  # MiniLM-L6 from each init, TF-IDF
    "export_check": 1,
}
REMOTE_JOBS = 26  # the whole DAG but aggregate, report, all
FINETUNES = 6  # MiniLM-L6 from 2 inits and TF-IDF, at 2 sizes
# The SLURM job the canceller kills: the `train` group job in which a full MiniLM fine-tune on
# the whole training set (the longest jobs, ~15-40 s) is training — its rule log shows a
# validation point and its history is not written yet. A group job's comment is
# 'rule_<group>_<rules>'; on the 2-CPU node a train group (2 CPUs) runs alone.
CANCEL_COMMENT = "rule_train_"
CANCEL_LOGS = [f"minilm-l6/bbc-news/1/0/{init}" for init in INITS]
CANCEL_WHEN_LOGGED = "val accuracy"  # the protocol's log line at each validation point

BINARIES = {
    "munged": "/usr/sbin/munged",
    "slurmctld": "/usr/sbin/slurmctld",
    "slurmd": "/usr/sbin/slurmd",
    "sbatch": "/usr/bin/sbatch",
    "squeue": "/usr/bin/squeue",
    "scancel": "/usr/bin/scancel",
    "sinfo": "/usr/bin/sinfo",
    "srun": "/usr/bin/srun",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _real_memory_mb() -> int:
    """90% of the machine's memory: slurmd drains a node that has less than configured."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.9)
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _slurm_conf(root: Path, munge_socket: Path) -> str:
    return f"""\
ClusterName=ptmeval
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
# finished jobs stay visible to `squeue --states=all` for an hour (the status checks and the
# assertions read them there: accounting is disabled)
MinJobAge=3600
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmdSpoolDir={root}/spool
StateSaveLocation={root}/state
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory={_real_memory_mb()} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _slurm(*args: str) -> subprocess.CompletedProcess:
    """A SLURM client command against the test cluster (SLURM_CONF is set by the fixture)."""
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _logs(root: Path) -> str:
    return "\n".join(
        f"--- {p.name}:\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted(root.glob("*.log")) + sorted(root.glob("*/*.log"))
    )


@pytest.fixture(scope="module")
def slurm_cluster():
    """munged + slurmctld + slurmd (node `localhost`, 2 CPUs, partition `debug`), private to
    this module: own config, ports, munge socket, state and logs in a temporary directory."""
    require_debian_packages(BINARIES, ["slurm-wlm", "munge"])
    if os.geteuid() != 0:
        pytest.skip("starting munged (as user munge), slurmctld and slurmd needs root")

    # Not under pytest's tmp_path: its parents are 0700 and munged (user munge) must reach
    # its socket directory.
    root = Path(tempfile.mkdtemp(prefix="ptmeval-slurm-"))
    root.chmod(0o755)
    munge = pwd.getpwnam("munge")
    munge_dir = root / "munge"
    munge_dir.mkdir()
    munge_dir.chmod(0o755)  # munged insists that everyone may reach its socket
    os.chown(munge_dir, munge.pw_uid, munge.pw_gid)
    munge_socket = munge_dir / "munge.socket"
    for sub in ("spool", "state"):
        (root / sub).mkdir()
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, munge_socket))

    # The slurm-jobstep plugin removes every SLURM_* variable, SLURM_CONF included, from the
    # environment of the `srun` it runs inside each job; a real cluster has its slurm.conf at
    # the default path (or runs configless), this one only has SLURM_CONF. Rather than writing
    # /etc/slurm/slurm.conf, a two-line `srun` first on PATH puts SLURM_CONF back.
    bin_dir = root / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(f'#!/bin/sh\nSLURM_CONF={conf} exec {BINARIES["srun"]} "$@"\n')
    srun.chmod(0o755)

    saved = {name: os.environ.get(name) for name in ("SLURM_CONF", "PATH")}
    os.environ["SLURM_CONF"] = str(conf)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"

    daemons: list[subprocess.Popen] = []

    def start(cmd: list[str], log: str, **kwargs) -> subprocess.Popen:
        with open(root / log, "w") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs
            )
        daemons.append(proc)
        return proc

    try:
        # All three in the foreground (-F/-D), so that their PIDs are the ones we started.
        munged = start(
            [
                BINARIES["munged"],
                "-F",
                f"--socket={munge_socket}",
                f"--pid-file={munge_dir / 'munged.pid'}",
                f"--log-file={munge_dir / 'munged.log'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
            ],
            "munged.out.log",
            user=munge.pw_uid,
            group=munge.pw_gid,
        )
        for _ in range(100):
            if munge_socket.exists() or munged.poll() is not None:
                break
            time.sleep(0.1)
        if not munge_socket.exists():
            pytest.fail(f"munged did not start:\n{_logs(root)}")
        start([BINARIES["slurmctld"], "-D", "-c"], "slurmctld.out.log")
        start([BINARIES["slurmd"], "-D", "-N", "localhost"], "slurmd.out.log")
        state = ""
        for _ in range(60):
            state = _slurm("sinfo", "-h", "-N", "-o", "%N %T").stdout.strip()
            if state == "localhost idle":
                break
            time.sleep(1)
        else:
            pytest.fail(f"the SLURM node never became idle ({state!r}):\n{_logs(root)}")
        yield {"root": root, "conf": conf}
    finally:
        # Cancel what is left of our jobs (only this private cluster sees them), give their
        # steps a moment to end, then stop the daemons we started, by PID.
        try:
            ids = _slurm("squeue", "-h", "-o", "%i").stdout.split() if len(daemons) == 3 else []
            if ids:
                _slurm("scancel", *ids)
                for _ in range(30):
                    if not _slurm("squeue", "-h", "-t", "RUNNING,COMPLETING", "-o", "%i").stdout:
                        break
                    time.sleep(1)
        except (OSError, subprocess.SubprocessError):
            pass  # the daemons are stopped below all the same
        for proc in reversed(daemons):
            _stop(proc)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(root, ignore_errors=True)


class Canceller(threading.Thread):
    """Waits for one of the CANCEL_LOGS fine-tunes to log CANCEL_WHEN_LOGGED while the only
    running SLURM job matching CANCEL_COMMENT runs it, then `scancel`s that job, once."""

    def __init__(self, work: Path) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.stop = threading.Event()
        self.cancelled: tuple[str, str] | None = None  # (SLURM job id, comment)
        self.training = ""  # the fine-tune that was training in it (wildcards path)
        self.error = ""

    def run(self) -> None:
        try:
            self._watch()
        except Exception as err:  # reported by the test, not lost in the thread
            self.error = repr(err)

    def _watch(self) -> None:
        while not self.stop.is_set():
            out = _slurm("squeue", "-h", "-t", "RUNNING", "-o", "%i|%k")
            running = [line.split("|") for line in out.stdout.splitlines()]
            groups = [(i, c) for i, c in running if c.startswith(CANCEL_COMMENT)]
            training = self._training()
            if training and len(groups) == 1:
                job_id, comment = groups[0]
                result = _slurm("scancel", job_id)
                if result.returncode != 0:
                    self.error = result.stderr
                self.cancelled, self.training = (job_id, comment), training
                return
            self.stop.wait(0.5)

    def _training(self) -> str:
        """The CANCEL_LOGS fine-tune whose rule log (logs/finetune/<wildcards>.log) shows it
        training and whose history is not written yet; '' if none."""
        for wildcards in CANCEL_LOGS:
            logs = list((self.work / "logs" / "finetune" / wildcards).glob("*.log"))
            done = list((self.work / "results" / "finetune" / wildcards).glob("*/history.parquet"))
            try:
                if logs and CANCEL_WHEN_LOGGED in logs[0].read_text() and not done:
                    return wildcards
            except OSError:
                continue
        return ""


@dataclass
class JobBlock:
    """One job as Snakemake's log announces it ('rule x:' / 'localrule x:' and its fields)."""

    rule: str
    local: bool
    group: str | None = None  # the group job it was announced in ('Group job <name> ...:')
    fields: dict[str, str] = field(default_factory=dict)


def parse_blocks(log: str) -> list[JobBlock]:
    """The main run's job blocks, those of group jobs (indented under their 'Group job' line)
    included: not those in the SLURM logs of failed jobs, which Snakemake prints
    (show-failed-logs) and which hold the node-side Snakemake's 'localrule' blocks."""
    blocks: list[JobBlock] = []
    current: JobBlock | None = None
    group: str | None = None
    for line in without_shown_logs(log).splitlines():
        group_header = re.search(r"\] Group job (\w+) \(jobs in lexicogr\. order\):$", line)
        header = re.match(r"^( *)(local)?rule (\w+):$", line)
        if group_header:
            group, current = group_header.group(1), None
        elif header and len(header.group(1)) in (0, 4):  # deeper: an error message's job list
            indent = len(header.group(1))
            if indent == 0:
                group = None
            current = JobBlock(rule=header.group(3), local=bool(header.group(2)), group=group)
            current.fields["_indent"] = str(indent)
            blocks.append(current)
        elif (
            current is not None
            and line.startswith(" " * (int(current.fields["_indent"]) + 4))
            and ": " in line
        ):
            key, _, value = line.strip().partition(": ")
            current.fields[key] = value
        elif not line.strip() or line.strip().startswith("[") or line.startswith("Shell command"):
            current = None  # a blank line, a time stamp or the shell line between members
        else:
            # other lines (a submission, a finished job) may come between a group's members:
            # an indented block belongs to the last group announced
            current = None
    return blocks


def parse_submissions(log: str) -> list[tuple[str, str, Path]]:
    """(Snakemake job id — a number, or a group job's id —, SLURM job id, SLURM log) for every
    sbatch, in order."""
    return [
        (m.group(1), m.group(2), Path(m.group(3)))
        for m in re.finditer(
            r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.", log
        )
    ]


def mem_mb(block: JobBlock) -> int:
    return int(re.search(r"\bmem_mb=(\d+)", block.fields["resources"]).group(1))


@dataclass
class SlurmRun:
    work: Path
    result: subprocess.CompletedProcess
    log: str
    wall_s: float
    cancelled: tuple[str, str] | None
    training: str
    cancel_error: str


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory) -> SlurmRun:
    work = tmp_path_factory.mktemp("slurm-e2e")
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    # The profile leaves the partition to the user: add this cluster's to its defaults (a
    # command-line --default-resources replaces the profile's whole list).
    defaults = [f"{k}={v}" for k, v in profile["default-resources"].items()]
    canceller = Canceller(work)
    canceller.start()
    start = time.monotonic()
    try:
        result = run_snakemake(
            "--profile",
            str(PROFILE),
            "--configfile",
            str(one_seed_config(work)),
            "--default-resources",
            *defaults,
            "slurm_partition=debug",
            "--slurm-keep-successful-logs",
            cwd=work,
            timeout=3600,
        )
    finally:
        canceller.stop.set()
        canceller.join(timeout=30)
    wall_s = time.monotonic() - start
    log = result.stderr + result.stdout
    (work / "snakemake.log").write_text(log)
    print(f"\nSLURM e2e run: {wall_s:.0f} s, exit {result.returncode}, log {work}/snakemake.log")
    return SlurmRun(
        work, result, log, wall_s, canceller.cancelled, canceller.training, canceller.error
    )


def test_slurm_run_completes_despite_the_cancelled_job(slurm_run):
    assert slurm_run.result.returncode == 0, slurm_run.log[-6000:]
    assert slurm_run.cancelled is not None, (
        f"no running {CANCEL_COMMENT}* job was seen logging {CANCEL_WHEN_LOGGED!r} to cancel"
    )
    assert not slurm_run.cancel_error, slurm_run.cancel_error
    assert (slurm_run.work / "reports" / "e2e" / "index.html").exists()


def test_jobs_went_through_slurm_in_groups(slurm_run):
    log, logs = slurm_run.log, (slurm_run.work / ".snakemake" / "slurm_logs").resolve()
    stats = job_stats(log)
    remote = {rule: n for rule, n in stats.items() if rule not in LOCAL_RULES}
    assert sum(remote.values()) == REMOTE_JOBS, stats
    # every job of a grouped rule was announced inside its group job, every other one alone
    for block in parse_blocks(log):
        if not block.local:
            expected = next((g for g, rules in GROUPS.items() if block.rule in rules), None)
            assert block.group == expected, (block.rule, block.group, block.fields)
    folders = {f"group_{g}_{'_'.join(sorted(rules))}": g for g, rules in GROUPS.items()}
    folders |= {f"rule_{rule}": rule for rule in SINGLE_SUBMISSIONS}
    submissions = parse_submissions(log)
    per_folder: dict[str, set[str]] = {}
    for job_id, slurm_id, slurm_log in submissions:
        # every SLURM job's log (kept by --slurm-keep-successful-logs), one folder per group
        # or rule
        assert slurm_log.is_file(), slurm_log
        assert slurm_log.name == f"{slurm_id}.log"
        folder = slurm_log.relative_to(logs).parts[0]
        assert folder in folders, slurm_log
        per_folder.setdefault(folders[folder], set()).add(job_id)
    # fewer submissions than jobs: 13 for 26 (the cancelled group's resubmission aside)
    expected = GROUP_SUBMISSIONS | SINGLE_SUBMISSIONS
    assert {k: len(v) for k, v in per_folder.items()} == expected
    assert len(submissions) == sum(expected.values()) + 1
    assert {p.name for p in logs.iterdir()} == set(folders)
    # SLURM itself knows every one of them, under this run's job name, as completed (but the
    # one the test cancelled)
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    listed = _slurm("squeue", "-h", "--states=all", "--name", run_id, "-o", "%i|%T|%k")
    states = dict(line.split("|")[:2] for line in listed.stdout.splitlines())
    assert set(states) == {slurm_id for _, slurm_id, _ in submissions}
    cancelled_id = slurm_run.cancelled[0]
    assert states.pop(cancelled_id) == "CANCELLED"
    assert set(states.values()) == {"COMPLETED"}, states


def test_local_rules_ran_locally(slurm_run):
    blocks = parse_blocks(slurm_run.log)
    local = {b.rule for b in blocks if b.local}
    assert local == LOCAL_RULES
    assert not {b.rule for b in blocks if not b.local} & LOCAL_RULES
    submitted = {job_id for job_id, _, _ in parse_submissions(slurm_run.log)}
    assert not {b.fields["jobid"] for b in blocks if b.local} & submitted
    assert job_stats(slurm_run.log)["aggregate"] == 1
    assert (slurm_run.work / "results" / "aggregate" / "e2e" / "results.parquet").exists()


def _finetune_mem_mb(slurm_log: str, wildcards: str) -> int:
    """The `mem_mb` the fine-tune with these wildcards asked for inside a group job (its
    node-side block). Matched by wildcards: the group's other fine-tunes (another model) ask for
    other amounts, and which of them a cancelled attempt reached depends on the order it ran them."""
    blocks = re.findall(
        r"rule finetune:\n(?:    .*\n)*?    wildcards: (.*)\n(?:    .*\n)*?    resources: .*?mem_mb=(\d+)",
        slurm_log,
    )
    # the block's wildcards end with the job's settings key (ptmeval.plan)
    asked = {int(mb) for found, mb in blocks if re.sub(r", key=\w+$", "", found) == wildcards}
    assert len(asked) == 1, (wildcards, blocks)
    return asked.pop()


def test_cancelled_group_was_retried(slurm_run):
    log = slurm_run.log
    cancelled_id, comment = slurm_run.cancelled
    assert comment == "rule_train_evaluate_finetune"
    submissions = parse_submissions(log)
    job_id = next(j for j, s, _ in submissions if s == cancelled_id)
    attempts = [(s, path) for j, s, path in submissions if j == job_id]
    assert len(attempts) == 2 and attempts[0][0] == cancelled_id, attempts
    # Snakemake saw the cancellation as the group's failure and resubmitted the same group job
    assert "Error in group train" in log
    assert f"Trying to restart job {job_id}." in log
    # the fine-tune that was training when its group was cancelled ran again in the second
    # attempt, which finished
    model, task, fraction, seed, init = slurm_run.training.split("/")
    wildcards = f"model={model}, task={task}, fraction={fraction}, seed={seed}, init={init}"
    first, second = (path.read_text(errors="replace") for _, path in attempts)
    assert wildcards in first and wildcards in second
    assert f"JOB {cancelled_id} ON localhost CANCELLED" in first
    # the group's fine-tunes (4, or the 2 left over) and their evaluations, all done (each
    # member also runs as its own node-side Snakemake: '1 of 1 steps')
    steps = {int(n) for n in re.findall(r"\b\d+ of (\d+) steps", second)} - {1}
    assert steps in ({4}, {8}), steps
    (total,) = steps
    assert f"{total} of {total} steps (100%) done" in second
    assert "CANCELLED" not in second
    # the second attempt asked for twice the memory (a fine-tune's mem_mb scales with the
    # attempt, and so does the group's request)
    assert "--attempt 2" in second
    assert abs(_finetune_mem_mb(second, wildcards) - 2 * _finetune_mem_mb(first, wildcards)) <= 1
    # Snakemake printed the cancelled job's SLURM log (show-failed-logs), with the node-side
    # Snakemake's job blocks, which parse_blocks leaves out
    assert f"Logfile {attempts[0][1]}:" in log


def _results(work: Path) -> pd.DataFrame:
    table = pd.read_parquet(work / "results" / "aggregate" / "e2e" / "results.parquet")
    table = one_seed_rows(table)  # the SLURM run's seed and task
    return table[[*KEYS, "value"]].sort_values(KEYS).reset_index(drop=True)


def test_results_equal_the_local_run(slurm_run, e2e_workdir):
    local, slurm = _results(e2e_workdir), _results(slurm_run.work)
    jobs = slurm.groupby(["model", "task", "fraction", "seed", "init"]).size()
    assert len(jobs) == FINETUNES and (jobs == 3).all()  # complete: each job's 3 metrics
    pd.testing.assert_frame_equal(slurm[KEYS], local[KEYS])
    np.testing.assert_allclose(slurm["value"], local["value"], rtol=0, atol=1e-9)


def test_predictions_equal_the_local_run(slurm_run, e2e_workdir):
    def files(work: Path) -> dict[str, Path]:
        base = work / "results" / "evaluate"
        return {str(p.relative_to(base)): p for p in base.rglob("predictions.parquet")}

    local, slurm = files(e2e_workdir), files(slurm_run.work)
    # <model>/<task>/<fraction>/<seed>/<init>/<key>/predictions.parquet
    local = {
        name: path
        for name, path in local.items()
        if name.split("/")[3] == "0" and name.split("/")[1] == TEXT_TASK
    }
    # the same jobs under the same settings keys; the local folder also keeps the results of
    # the e2e tests' changed settings beside them (other keys)
    assert len(slurm) == FINETUNES and set(slurm) <= set(local), sorted(set(slurm) - set(local))
    for name, path in slurm.items():
        ours = pd.read_parquet(path).sort_values("row_id").reset_index(drop=True)
        theirs = pd.read_parquet(local[name]).sort_values("row_id").reset_index(drop=True)
        exact = [c for c in ours.columns if c not in ("prob_label", "probs")]
        pd.testing.assert_frame_equal(ours[exact], theirs[exact], obj=name)
        np.testing.assert_allclose(ours["prob_label"], theirs["prob_label"], atol=1e-6)
        np.testing.assert_allclose(
            np.stack(ours["probs"]), np.stack(theirs["probs"]), atol=1e-6, err_msg=name
        )
