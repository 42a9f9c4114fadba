"""The workflow as Snakemake sees it: lint, format, dry runs, config errors before any job."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ptmeval.config import load_config
from ptmeval.estimate import estimate
from ptmeval.plan import IDENTITY, RULE, Plan
from tests.conftest import REPO, job_stats, run_snakemake

BIN = Path(sys.executable).parent


def test_snakemake_lint_is_clean():
    result = run_snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_snakefmt_check():
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "Snakefile", "rules"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_default_config(tmp_path):
    result = run_snakemake("-n", "--quiet", "rules", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stats = job_stats(result.stdout + result.stderr)
    # Reuters-R8 × 5 sizes × 3 seeds × (minilm full + probe 1 + smollm2 1 + mpnet 1 + tfidf 1)
    # + mnist × 5 × 3 × (efficientnet-lite0 full 2 inits + probe 1 + lite1 1 + lite2 1)
    assert stats["finetune"] == 5 * 3 * 5 + 5 * 3 * 5 == stats["evaluate"]
    assert (
        stats["download_model"] == 6  # MiniLM-L6's and EfficientNet-Lite0's two methods share one
        and stats["prepare_task"] == 2
        and stats["subsample"] == 2 * 5 * 3
        and stats["extract_features"] == 3 + 3  # 3 pretrained models per task, shared
        and stats["transfer_scores"] == 3 + 3
        # a grid per model × init: minilm full, 3 text probes, tfidf; lite0 full × 2, 3 probes
        and stats["select_hparams"] == 5 + 5
        # every model, the TF-IDF baseline too; MiniLM-L6's inference once (under full), nothing
        # left for its probe; EfficientNet-Lite0's probe profiled and export-checked on its own
        and stats["measure_runtime"] == 7
        and stats["profile_model"] == 8
        and stats["export_check"] == 8
    )
    # the jobs Snakemake plans are the plan's (ptmeval.plan), and the estimate counts the same
    cfg = load_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), REPO)
    assert plan_counts(cfg) == {rule: n for rule, n in stats.items() if rule in RULE.values()}
    assert plan_counts(cfg) == estimate_counts(cfg)


def test_dry_run_e2e_config(tmp_path):
    result = run_snakemake(
        "-n", "--quiet", "rules", "--configfile", str(REPO / "tests/e2e/config.yaml"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    stats = job_stats(result.stdout + result.stderr)
    assert stats["finetune"] == 16 and stats["render_report"] == 1
    assert stats["select_hparams"] == 4  # minilm × 2 inits, tfidf, efficientnet-lite0
    assert stats["measure_runtime"] == 3  # minilm, tfidf, efficientnet-lite0
    cfg = load_config(yaml.safe_load((REPO / "tests/e2e/config.yaml").read_text()), REPO)
    assert plan_counts(cfg) == {rule: n for rule, n in stats.items() if rule in RULE.values()}
    assert plan_counts(cfg) == estimate_counts(cfg)


def plan_counts(cfg) -> dict[str, int]:
    plan = Plan(cfg)
    return {RULE[stage]: len(plan.jobs(stage)) for stage in IDENTITY if plan.jobs(stage)}


def estimate_counts(cfg) -> dict[str, int]:
    table = estimate(cfg, cache=None, peak=1e11, cores=2).set_index("stage")["jobs"]
    return {rule: int(n) for rule, n in table.items() if rule in RULE.values()}


def test_job_announcements_carry_no_empty_shell_line(tmp_path):
    """Every rule runs a script: Snakemake's `printshellcmds` would add "Shell command: None" to
    each job it announces (the workflow profile, read automatically, must not set it)."""
    result = run_snakemake(
        "-n", "--cores", "2", "--configfile", str(REPO / "tests/e2e/config.yaml"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr
    assert "rule finetune:" in said
    assert "Shell command" not in said


def test_light_fits_ask_for_one_thread_and_networks_for_two(tmp_path):
    """Two TF-IDF or probe fits (seconds of mostly single-threaded start-up each) run side by
    side on 2 cores; a network's fine-tune or selection runs takes both."""
    result = run_snakemake(
        "-n", "--cores", "2", "--configfile", str(REPO / "tests/e2e/config.yaml"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    threads: dict[tuple[str, str], set[int]] = {}
    for block in re.split(r"\n(?=\[)", result.stdout + result.stderr):
        rule = re.search(r"^rule (finetune|select_hparams):$", block, re.M)
        if rule:
            model = re.search(r"wildcards: model=([\w.-]+)", block).group(1)
            asked = re.search(r"^    threads: (\d+)$", block, re.M)  # not shown when 1
            threads.setdefault((rule.group(1), model), set()).add(
                int(asked.group(1)) if asked else 1
            )
    assert threads == {
        (rule, model): {n}
        for rule in ("finetune", "select_hparams")
        for model, n in (("minilm-l6", 2), ("tfidf-logreg", 1), ("efficientnet-lite0", 1))
    }


HEAVY = ("torch", "torchvision", "transformers", "sklearn", "onnxruntime", "deepspeed")


def test_parsing_the_workflow_imports_no_heavy_library(tmp_path):
    """Snakemake parses the Snakefile at every start, in a dry run and in every cluster job on
    its node: planning must not import torch & co. (seconds each). `-X importtime` lists every
    module the dry run imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "snakemake", "-s", str(REPO / "Snakefile")]
        + ["-n", "--quiet", "--cores", "2", "--configfile", str(REPO / "tests/e2e/config.yaml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {
        line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if "|" in line
    }
    assert "snakemake" in imported and "ptmeval.config" in imported  # the listing is complete
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def bad_config(tmp_path, mutate) -> subprocess.CompletedProcess:
    data = yaml.safe_load((REPO / "tests/e2e/config.yaml").read_text())
    mutate(data, tmp_path)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return run_snakemake("--cores", "1", "--configfile", str(path), cwd=tmp_path)


def _text_csv(data, tmp_path):
    (tmp_path / "t.csv").write_text("body,label\nhello,a\nworld,b\n")
    data["tasks"][0]["source"] = {
        "kind": "file",
        "path": str(tmp_path / "t.csv"),
        "text_column": "text",
    }


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d, p: d["models"][0].update(colour="red"),
            "invalid config: models[0] ('minilm-l6').colour: unknown key",
        ),
        (
            lambda d, p: d["models"][0].update(adapter="hf-txt"),
            "unknown adapter 'hf-txt'; did you mean 'hf-text'?",
        ),
        (
            lambda d, p: d["models"][0]["source"].update(package="not_installed_pkg"),
            "package 'not_installed_pkg' is not installed",
        ),
        (_text_csv, "tasks 'bbc-news'.source.text_column: column 'text' is not in"),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, mutate, message):
    result = bad_config(tmp_path, mutate)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


def test_a_dry_run_names_a_damaged_table_but_moves_nothing(tmp_path):
    damaged = tmp_path / "results" / "tasks" / "reuters-r8" / "0123abcd" / "data.parquet"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"PAR1 cut short")
    result = run_snakemake("-n", "--quiet", "rules", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "'results/tasks/reuters-r8/0123abcd/data.parquet' is damaged" in result.stderr
    assert "will be moved aside and recomputed by a real run" in result.stderr
    assert damaged.exists() and not (tmp_path / "results" / ".damaged").exists()


def test_a_path_with_another_settings_key_is_refused_clearly(tmp_path):
    """Asked for by hand, a job path whose settings key is not this config's names the job and
    both keys instead of running the job under the wrong key."""
    cfg = load_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), REPO)
    key = Plan(cfg).key("profile", {"model": "minilm-l6"})
    result = run_snakemake("-n", "results/profile/minilm-l6/00000000/profile.parquet", cwd=tmp_path)
    assert result.returncode != 0
    assert (
        "no 'profile' job {'model': 'minilm-l6'} with settings key 00000000 under this config "
        f"(its key here is {key})"
    ) in result.stdout + result.stderr, result.stdout[-2000:]
