"""The REST examples of docs/SERVICE.md (its curl and Python blocks) run against a live server and
give what the document says they give."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## KServe v2 over HTTP/REST"


def blocks(language: str) -> list[str]:
    text = (ROOT / "docs" / "SERVICE.md").read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def json_values(text: str) -> list:
    """Every JSON value printed one after another (curl adds no newlines)."""
    decoder, values, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        value, i = decoder.raw_decode(text, i)
        values.append(value)
    return values


def test_the_curl_examples_answer_as_documented(server, tmp_path):
    (script,) = blocks("bash")
    script = script.replace("localhost:8000", f"127.0.0.1:{server.http_port}")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            timeout=540)
    assert result.returncode == 0, result.stderr
    ready, metadata, reply, error, digit = json_values(result.stdout)
    assert ready == {"ready": True} and metadata["name"] == "cifar-tiny"
    assert reply["id"] == "a1" and reply["outputs"][0]["shape"] == [1, 10]
    assert error["error"].startswith("inputs: expected a non-empty array")
    scores = digit["outputs"][0]["data"]
    assert digit["model_name"] == "digits-lenet5" and int(np.argmax(scores)) == 7


def test_the_python_example_prints_what_its_comment_says(server):
    (code,) = blocks("python")
    code = code.replace("localhost:8000", f"127.0.0.1:{server.http_port}")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(2, 10)"
