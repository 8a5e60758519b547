"""Writes service/client/_sync.py from _async.py, so the two clients cannot drift (httpx's way).

unasync's rules turn the code (``async``/``await`` dropped, the names below swapped); a few text
rules then mend what tokens cannot say: the docstrings, the asyncio helpers, ``yield from``;
ruff formats the result as it formats the rest of the tree.

    python scripts/gen_sync_client.py          # rewrite service/client/_sync.py
    python scripts/gen_sync_client.py --check  # exit 1 when the committed file differs
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import unasync

CLIENT = Path(__file__).resolve().parent.parent / "service" / "client"
ASYNC_FILE = CLIENT / "_async.py"
SYNC_FILE = CLIENT / "_sync.py"

#: Names unasync swaps beyond its own (``__aenter__``, ``AsyncIterator``, ``asynccontextmanager``…).
NAMES = {
    "AsyncClient": "Client",
    "AsyncBaseTransport": "BaseTransport",
    "aclose": "close",
    "aclosing": "closing",
    "acontent": "content",
    "aiter_bytes": "iter_bytes",
    "aiter_lines": "iter_lines",
    "aread": "read",
}

#: (pattern, replacement) over unasync's output; each must match, or the async file changed shape.
TEXT: list[tuple[str, str]] = [
    (
        r'\A"""The asynchronous client: [^\n]*"""',
        '"""The synchronous client: generated from _async.py by scripts/gen_sync_client.py."""',
    ),
    (r"^import inspect\n", ""),
    (
        r"^from collections\.abc import Generator, Iterator, Callable, Sequence$",
        "from collections.abc import Callable, Generator, Iterator, Sequence",
    ),
    (r"asynchronous \(asyncio\)", "synchronous"),
    (r"async with AsyncClient\b", "with Client"),
    (r"\bawait ", ""),
    (r"\n *``on_event``/``on_update`` callbacks may be [^\n]*\n", ""),
    (r"for item in page\.items:\n *yield item", "yield from page.items"),
    # The asyncio helpers go; their calls become the plain calls they stand for.
    (r"\n\n\ndef _sleep\(.*?(?=\n\n\n__all__)", ""),
    (r"\b_sleep\(", "time.sleep("),
    (r"\b_call\((\w+), ", r"\1("),
]


def generate(source: str) -> str:
    """The sync client's source for the async client's ``source``."""
    with tempfile.TemporaryDirectory() as tmp:
        async_path = Path(tmp, "_async", "client.py")
        async_path.parent.mkdir()
        async_path.write_text(source, encoding="utf-8")
        rule = unasync.Rule("/_async/", "/_sync/", additional_replacements=NAMES)
        unasync.unasync_files([str(async_path)], rules=[rule])
        text = Path(tmp, "_sync", "client.py").read_text(encoding="utf-8")
    for pattern, replacement in TEXT:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE | re.DOTALL)
        if not count:
            raise SystemExit(f"gen_sync_client: {pattern!r} matched nothing in _async.py's output")
    formatted = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(SYNC_FILE), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    )
    return formatted.stdout


def main(argv: list[str]) -> int:
    expected = generate(ASYNC_FILE.read_text(encoding="utf-8"))
    if "--check" in argv:
        if SYNC_FILE.read_text(encoding="utf-8") != expected:
            print(f"{SYNC_FILE} is stale: run python scripts/gen_sync_client.py", file=sys.stderr)
            return 1
        return 0
    SYNC_FILE.write_text(expected, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
