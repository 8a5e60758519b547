"""A transaction that notifies a channel reaches this process's listeners at its commit, in the
committing thread, so a request that moved an alias answers only after its own cache dropped it."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from service.watch import SqliteCommitWatcher, notify


def test_notifying_commits_reach_this_process_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'watch.db'}"
    engine = create_engine(url)
    callers: list[str] = []
    looked = threading.Event()

    def on_change() -> None:
        callers.append(threading.current_thread().name)
        looked.set()

    stop = threading.Event()
    watcher = SqliteCommitWatcher(url, "moves", on_change, stop)
    watcher.start()
    try:
        assert looked.wait(5), "the watcher's first look calls on_change once it listens"
        with Session(engine) as session:
            notify(session, "moves")
            session.rollback()
            session.commit()
            assert threading.current_thread().name not in callers, "a rollback tells no one"
            notify(session, "moves")
            notify(session, "moves")
            session.commit()
            assert callers.count(threading.current_thread().name) == 1, (
                "the commit calls this process's listener once, before commit() returns"
            )
            notify(session, "other-channel")
            session.commit()
            assert callers.count(threading.current_thread().name) == 1
    finally:
        stop.set()
        watcher.join(timeout=5)
    assert not watcher.is_alive()
    with Session(engine) as session:
        notify(session, "moves")
        session.commit()
    assert callers.count(threading.current_thread().name) == 1, "a stopped watcher hears nothing"
    engine.dispose()
