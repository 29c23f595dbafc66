"""The README's quick start, run as pasted against the real server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _support import ServerProcess

README = Path(__file__).resolve().parents[1] / "README.md"


def quick_start_code() -> str:
    text = README.read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the quick start has one Python block"
    return str(blocks[0])


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
