"""The sync client is generated from the async one: the committed file is what the script writes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gen_sync_client.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_sync_client", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sync_client_is_the_generated_one_byte_for_byte() -> None:
    gen = _generator()
    expected = gen.generate(gen.ASYNC_FILE.read_text(encoding="utf-8"))
    assert gen.SYNC_FILE.read_bytes() == expected.encode("utf-8"), (
        "service/client/_sync.py differs from its generation: edit _async.py, then run "
        "python scripts/gen_sync_client.py"
    )


def test_generation_turns_the_async_code_into_plain_calls() -> None:
    gen = _generator()
    source = gen.ASYNC_FILE.read_text(encoding="utf-8")
    edited = source.replace("await _sleep(delay)", "await _sleep(delay * 2)", 1)
    assert edited != source
    text = gen.generate(edited)
    assert "time.sleep(delay * 2)" in text
    assert "async " not in text and "await " not in text and "asyncio" not in text
    assert "class Client(ClientBase[httpx.BaseTransport, httpx.Client]):" in text


def test_generation_refuses_an_async_file_its_rules_no_longer_fit() -> None:
    gen = _generator()
    source = gen.ASYNC_FILE.read_text(encoding="utf-8").replace("import inspect\n", "")
    with pytest.raises(SystemExit, match="import inspect"):
        gen.generate(source)
