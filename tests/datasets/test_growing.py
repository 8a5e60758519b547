"""A file read while another thread still writes it: full reads, the whole file, a rewrite seen."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from service.datasets.growing import GrowingFile


def _write_in_pieces(path: Path, pieces: list[bytes], gate: threading.Event) -> None:
    with path.open("wb") as fh:
        for piece in pieces:
            fh.write(piece)
            fh.flush()
            gate.wait(5)  # the reader has asked for more before the next piece
            gate.clear()


def test_reads_are_full_until_the_end_and_the_file_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    pieces = [bytes([i]) * 700 for i in range(10)]
    gate = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        writer = pool.submit(_write_in_pieces, path, pieces, gate)
        with GrowingFile(path, writer) as growing:
            chunks = []
            while True:
                gate.set()
                chunk = growing.read(1000)
                if not chunk:
                    break
                chunks.append(chunk)
            assert growing.complete()
    assert b"".join(chunks) == b"".join(pieces)
    assert [len(c) for c in chunks] == [1000] * 7


def test_a_replaced_file_is_not_complete(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"

    writer: Future[None] = Future()
    with GrowingFile(path, writer) as growing:
        path.write_bytes(b"first pass")
        assert growing.read(5) == b"first"
        path.unlink()
        path.write_bytes(b"the second, longer pass")
        writer.set_result(None)
        assert growing.read(100) == b" pass"
        assert not growing.complete()


def test_a_writer_that_fails_before_writing_ends_the_stream(tmp_path: Path) -> None:
    writer: Future[None] = Future()
    writer.set_exception(ValueError("bad file"))
    with GrowingFile(tmp_path / "never.bin", writer) as growing:
        assert growing.read(100) == b""
        assert not growing.complete()
    with pytest.raises(ValueError, match="bad file"):
        writer.result()
