"""A job's log file holds what ended it: one line for a user error, the traceback for a bug."""

import subprocess
import sys

import pytest

SCRIPT = """
from ptmeval.logs import log_to
from ptmeval.errors import ConfigError
log_to({path!r})
{body}
"""


@pytest.mark.parametrize(
    "body, in_log, not_in_log",
    [
        ("raise RuntimeError('boom in a job')", ["Traceback", "RuntimeError: boom in a job"], []),
        ("raise ConfigError('models[0]: bad')", ["models[0]: bad"], ["Traceback"]),
    ],
)
def test_what_ends_a_job_is_in_its_log_file(tmp_path, body, in_log, not_in_log):
    log = tmp_path / "logs" / "job.log"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(path=str(log), body=body)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    text = log.read_text()
    for piece in in_log:
        assert piece in text and piece in proc.stderr, piece
    for piece in not_in_log:
        assert piece not in text, piece
    assert proc.stderr.count("Traceback") <= 1  # not printed twice
