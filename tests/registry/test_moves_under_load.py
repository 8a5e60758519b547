"""An alias that moves while clients predict by it, across API processes, on both databases.

Each API process caches what ``name@alias`` resolves to: at most RIDGELINE_ALIAS_CACHE_SECONDS,
and dropped when it hears of a move (Postgres NOTIFY, SQLite commit watch). So every answer
must come from a version the alias held at some instant between the request's start (less that
bound) and its end, and none may fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import cycle

import httpx
import pytest

from service.config import Settings
from tests.conftest import Server, start_server, stop_process, wait_for
from tests.registry.conftest import Trained, unique

pytestmark = pytest.mark.usefixtures("worker")

CLIENTS = 20
MOVES = 50
CACHE_SECONDS = 1.0


@pytest.fixture(scope="module")
def api_pair(server: Server, peer: Server) -> list[Server]:
    """Two API processes on one database, their alias cache at its default."""
    assert Settings.model_fields["alias_cache_seconds"].default == CACHE_SECONDS
    return [server, peer]


@dataclass
class Answer:
    started: float
    ended: float
    status: int
    version: int | None


@dataclass
class Timeline:
    """When each move was sent and answered, and the version it set."""

    moves: list[tuple[float, float, int]] = field(default_factory=list)

    def held(self, version: int, start: float, end: float) -> bool:
        """Could the alias have pointed at `version` at some instant in [start, end]?

        Move i commits somewhere between its sending and its answer, so the alias may hold its
        version from the sending of move i until the answer of move i + 1."""
        for i, (sent, _, to) in enumerate(self.moves):
            until = self.moves[i + 1][1] if i + 1 < len(self.moves) else float("inf")
            if to == version and sent <= end and start <= until:
                return True
        return False


def _predict_loop(
    client: httpx.Client,
    path: str,
    rows: list[dict[str, object]],
    stop: threading.Event,
    out: list[Answer],
) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            response = client.post(path, json={"rows": rows})
            status, header = response.status_code, response.headers.get("x-model-version")
        except httpx.HTTPError:
            status, header = -1, None
        out.append(Answer(started, time.monotonic(), status, int(header) if header else None))


@pytest.mark.slow  # a load test: 20 clients predicting through 50 moves, ~1 min per database
def test_alias_moved_50_times_under_20_clients_on_two_processes(
    server: Server, api_pair: list[Server], trained: Trained
) -> None:
    name = unique("moving")
    with trained.client(server) as admin:
        assert admin.post("/v1/models", json={"name": name}).status_code == 201
        for job in trained.jobs:
            registered = admin.post(f"/v1/models/{name}/versions", json={"job_id": job["id"]})
            assert registered.status_code == 201, registered.text
    timeline = Timeline()
    movers = [api.client(trained.key) for api in api_pair]
    sent = time.monotonic()
    first = movers[0].put(f"/v1/models/{name}/aliases/champion", json={"version": 1})
    assert first.status_code == 200, first.text
    timeline.moves.append((sent, time.monotonic(), 1))

    stop = threading.Event()
    answers: list[list[Answer]] = [[] for _ in range(CLIENTS)]
    clients = [api_pair[i % 2].client(trained.key) for i in range(CLIENTS)]
    threads = [
        threading.Thread(
            target=_predict_loop,
            args=(
                clients[i],
                f"/v1/models/{name}@champion/predict",
                trained.rows,
                stop,
                answers[i],
            ),
            daemon=True,
        )
        for i in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    try:
        targets = cycle([2, 3, 1])
        for move in range(MOVES):
            version = next(targets)
            sent = time.monotonic()
            response = movers[move % 2].put(
                f"/v1/models/{name}/aliases/champion", json={"version": version}
            )
            assert response.status_code == 200, response.text
            returned = time.monotonic()
            timeline.moves.append((sent, returned, version))

            # Paced by the clients, not by the clock: every client answers once after the move.
            def answered_since(moved: float = returned) -> bool:
                return all(any(a.started > moved for a in out[-3:]) for out in answers)

            wait_for(
                answered_since,
                timeout=60,
                interval=0.01,
                message="every client to answer after the move",
            )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        for client in (*clients, *movers):
            client.close()

    every = [a for out in answers for a in out]
    failed = [a for a in every if a.status != 200]
    assert not failed, f"{len(failed)} of {len(every)} requests failed: {failed[:5]}"
    stale = [
        a
        for a in every
        if a.version is None or not timeline.held(a.version, a.started - CACHE_SECONDS, a.ended)
    ]
    assert not stale, f"{len(stale)} answers from a version the alias did not hold: {stale[:5]}"
    assert {a.version for a in every} == {1, 2, 3}
    assert len(every) >= CLIENTS * MOVES

    with trained.client(server) as admin:
        history = admin.get(f"/v1/models/{name}/aliases").json()["history"]
    assert len(history) == MOVES + 1
    assert [e["to_version"] for e in reversed(history)] == [v for *_, v in timeline.moves]


@pytest.fixture(scope="module")
def long_cache_pair(
    server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """Two API processes whose cached aliases would live an hour: one listens for moves, one
    does not."""
    started: list[Server] = []
    try:
        for listen in ("true", "false"):
            started.append(
                start_server(
                    server.database_url,
                    tmp_path_factory.mktemp("api"),
                    RIDGELINE_ALIAS_CACHE_SECONDS="3600",
                    RIDGELINE_ALIAS_LISTEN=listen,
                )
            )
        yield started[0], started[1]
    finally:
        for api in started:
            stop_process(api.process)


@pytest.mark.slow  # two more API processes, ~20 s per database
def test_a_move_reaches_every_listening_process(
    server: Server, long_cache_pair: tuple[Server, Server], trained: Trained
) -> None:
    listening, deaf = long_cache_pair
    name = unique("heard")
    path = f"/v1/models/{name}@champion/predict"
    with (
        trained.client(server) as admin,
        trained.client(listening) as heard,
        trained.client(deaf) as unheard,
    ):
        assert admin.post("/v1/models", json={"name": name}).status_code == 201
        for job in trained.jobs[:2]:
            assert admin.post(f"/v1/models/{name}/versions", json={"job_id": job["id"]})
        admin.put(f"/v1/models/{name}/aliases/champion", json={"version": 1})

        def version(client: httpx.Client) -> str:
            response = client.post(path, json={"rows": trained.rows})
            assert response.status_code == 200, response.text
            return response.headers["x-model-version"]

        assert version(heard) == version(unheard) == "1"  # both cache version 1 now
        admin.put(f"/v1/models/{name}/aliases/champion", json={"version": 2})
        wait_for(lambda: version(heard) == "2", timeout=30, message="the move to be heard")
        # Without the listener, the cached alias stays until it expires (an hour here).
        assert version(unheard) == "1"
        # Deleting a version is heard as well: version 1, cached by number, goes.
        gone = f"/v1/models/{name}/versions/1/predict"
        assert heard.post(gone, json={"rows": trained.rows}).status_code == 200
        assert admin.delete(f"/v1/models/{name}/versions/1").status_code == 204
        wait_for(
            lambda: heard.post(gone, json={"rows": trained.rows}).status_code == 404,
            timeout=30,
            message="the deletion to be heard",
        )
