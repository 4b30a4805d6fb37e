"""The slow_marks plugin (tests/slow_marks.py) in a run of its own: an unmarked test over
``slow_s`` CPU seconds is listed, and beyond three times that fails the run although it passed; a
test marked slow (on itself or by its module) is never listed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SLOW_S = 0.1
BUSY = '''
import time

def busy(seconds):
    started = time.process_time()
    while time.process_time() - started < seconds:
        pass
'''
SUITE = BUSY + f'''
import pytest

def test_quick():
    pass

def test_a_little_over():
    busy({1.5 * SLOW_S})

def test_far_over():
    busy({5 * SLOW_S})

def test_far_over_in_a_child_process():
    import subprocess, sys
    subprocess.run([sys.executable, "-c", "import time; t = time.process_time()\\n"
                    "while time.process_time() - t < {5 * SLOW_S}: pass"], check=True)

@pytest.mark.slow
def test_marked():
    busy({1.5 * SLOW_S})
'''
MARKED_MODULE = BUSY + f'''
import pytest

pytestmark = pytest.mark.slow

def test_marked_by_its_module():
    busy({1.5 * SLOW_S})
'''


def test_unmarked_tests_over_the_limit_are_listed_and_far_over_fail_the_run(tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["slow_marks"]\n')
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "test_marked_module.py").write_text(MARKED_MODULE)
    env = {**os.environ, "PYTHONPATH": str(TESTS), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", f"slow_s={SLOW_S}",
                           "-o", "markers=slow: slow", "-q", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert "6 passed" in done.stdout and done.returncode == 1, done.stdout
    listed = {line.split("  ")[-2].split("::")[1]: line for line in done.stdout.splitlines() if "wall)  test_" in line}
    assert sorted(listed) == ["test_a_little_over", "test_far_over", "test_far_over_in_a_child_process"], done.stdout
    assert "mark it slow" in listed["test_a_little_over"]
    assert "fails the run" in listed["test_far_over"] and "fails the run" in listed["test_far_over_in_a_child_process"]
