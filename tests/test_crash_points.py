"""crashpoint(): parsing of ASSETGEN_CRASH_AT and the n-th-hit SIGKILL, in a real child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from assetgen.store import crash

CHILD = """
from assetgen.store.crash import crashpoint
for i in range(1, 6):
    crashpoint("other")
    crashpoint("p")
    print(i, flush=True)
"""


@pytest.mark.parametrize("value,expected", [(None, None), ("", None), ("after-rename", ("after-rename", 1)),
                                            ("after-rename:3", ("after-rename", 3)), ("x:y:2", ("x:y", 2))])
def test_parse(value, expected):
    assert crash._parse(value) == expected


@pytest.mark.parametrize("value,printed,killed", [("p:3", "1 2", True), ("p", "", True), (None, "1 2 3 4 5", False),
                                                  ("q:1", "1 2 3 4 5", False)])
def test_nth_hit_kills_the_process(value, printed, killed):
    env = {k: v for k, v in os.environ.items() if k != crash.ENV} | ({crash.ENV: value} if value else {})
    run = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=60)
    assert run.stdout.split() == printed.split()
    assert run.returncode == (-signal.SIGKILL if killed else 0), run.stderr


def test_unset_is_a_no_op_in_process(monkeypatch):
    monkeypatch.delenv(crash.ENV, raising=False)
    crash.reset()
    for _ in range(3):
        crash.crashpoint("after-rename")
    assert crash._counts == {}
