"""The slow_marks plugin (tests/slow_marks.py) in a run of its own: an unmarked test over
``slow_s`` is listed, and beyond three times that fails the run although it passed; a test
marked slow (on itself or by its module) is never listed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SLOW_S = 0.2
SUITE = f'''
import time
import pytest

def test_quick():
    pass

def test_a_little_over():
    time.sleep({1.5 * SLOW_S})

def test_far_over():
    time.sleep({5 * SLOW_S})

@pytest.mark.slow
def test_marked():
    time.sleep({1.5 * SLOW_S})
'''
MARKED_MODULE = f'''
import time
import pytest

pytestmark = pytest.mark.slow

def test_marked_by_its_module():
    time.sleep({1.5 * SLOW_S})
'''


def test_unmarked_tests_over_the_limit_are_listed_and_far_over_fail_the_run(tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["slow_marks"]\n')
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "test_marked_module.py").write_text(MARKED_MODULE)
    env = {**os.environ, "PYTHONPATH": str(TESTS), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", f"slow_s={SLOW_S}",
                           "-o", "markers=slow: slow", "-q", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert "5 passed" in done.stdout and done.returncode == 1, done.stdout
    listed = {line.split()[2].split("::")[1]: line for line in done.stdout.splitlines() if " s  test_" in line}
    assert sorted(listed) == ["test_a_little_over", "test_far_over"], done.stdout
    assert "fails the run" in listed["test_far_over"] and "mark it slow" in listed["test_a_little_over"]
