"""The README's quick start and streaming example, run as pasted against the real server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict

import pytest

from _support import ServerProcess

README = Path(__file__).resolve().parents[1] / "README.md"


def section_blocks(title: str) -> list[str]:
    text = README.read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return [str(b) for b in re.findall(r"```python\n(.*?)```", section, re.S)]


def quick_start_code() -> str:
    blocks = section_blocks("Quick start")
    assert len(blocks) == 1, "the quick start has one Python block"
    return blocks[0]


def test_quick_start_runs_as_written(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NODAI_ADMIN_TOKEN", server.admin_token)
    monkeypatch.setenv("NODAI_BASE_URL", server.base_url)
    monkeypatch.delenv("NODAI_API_KEY", raising=False)
    code = compile(quick_start_code(), str(README), "exec")

    exec(code, {"__name__": "__readme__"})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("shown once, store it: nk_")
    assert out[1].startswith("{'text': 'hello'} 0.002 req_")
    assert out[2].startswith("RateLimit(limit=100, remaining=99, reset=")
    assert out[3] == "1 0.002"

    # A second run hits the existing workflow (ConflictError) and still works.
    exec(code, {"__name__": "__readme__"})
    assert capsys.readouterr().out.splitlines()[3] == "1 0.002"


def test_streaming_example_runs_as_written(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NODAI_ADMIN_TOKEN", server.admin_token)
    monkeypatch.setenv("NODAI_BASE_URL", server.base_url)
    monkeypatch.delenv("NODAI_API_KEY", raising=False)
    example, helpers = section_blocks("Streaming")[:2]
    code = compile(example, str(README), "exec")

    for _ in range(2):  # the second run finds the workflow there already
        namespace: Dict[str, Any] = {"__name__": "__readme__"}
        exec(code, namespace)
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "hello streaming world"
        assert re.fullmatch(r"0\.002 req_[0-9a-f]+", out[1]), out[1]
        assert out[2] == "'hello streaming world'"
        assert len(out) == 3

    # The next block continues from the first.
    exec(compile(helpers, str(README), "exec"), namespace)
    assert capsys.readouterr().out == "one two"
    assert namespace["stream"].text == "one two"
    assert namespace["done"].request_id.startswith("req_")


def test_self_served_metering_example_runs_as_written(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NODAI_ADMIN_TOKEN", server.admin_token)
    monkeypatch.setenv("NODAI_BASE_URL", server.base_url)
    monkeypatch.delenv("NODAI_API_KEY", raising=False)
    example = section_blocks("Verify keys and report usage yourself")[0]
    code = compile(example, str(README), "exec")

    for _ in range(2):  # the second run finds the workflow there already, and makes another key
        exec(code, {"__name__": "__readme__"})
        out = capsys.readouterr().out.splitlines()
        assert out[:3] == [
            "a long text",
            "invalid_api_key",
            "start,end,workflow_id,requests,errors,cost,input_tokens,output_tokens",
        ]
        day = r"\d{4}-\d\d-\d\dT00:00:00Z"
        assert re.fullmatch(f"{day},{day},summarise,1,0,0.010000,29,11", out[3]), out[3]
        assert len(out) == 4
