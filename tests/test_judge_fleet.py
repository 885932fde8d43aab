"""The PostgreSQL fleet as an operator runs it: several API nodes (``sandboxkit serve
--db postgresql://... --workers 0``) and several workers (``sandboxkit worker``) as real
processes on one PostgreSQL cluster (scripts/postgres.sh), each test on a database of
its own. Chaos: a worker and an API node SIGKILLed and PostgreSQL crashed under load,
after which every accepted submission ends once, with its verdict.

Network: every connection goes to 127.0.0.1 (the nodes, the workers' metrics ports,
PostgreSQL).
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pg_fleet import (
    FINAL,
    Fleet,
    Node,
    Postgres,
    Worker,
    await_until,
    containers_of,
    parse_metrics,
    query,
    sample,
    wait_until,
)

import sandboxkit as sk  # noqa: F401 - the package under test must import
from sandboxkit._backends import connect
from sandboxkit._fleet.reaper import reap

pytestmark = pytest.mark.docker

PYTHON, C = 71, 50
ACCEPTED, WRONG, TLE, CE, NZEC = 3, 4, 5, 6, 11
WORKERS_KEYS = {"queue", "size", "available", "idle", "working", "paused", "failed"}
RESULT_FIELDS = "token,status,stdout,stderr,compile_output,message"


@pytest.fixture
def fleet(pg_db_url: str, tmp_path: Path) -> Iterator[Fleet]:
    """The processes of one test, on its own database; all stopped after it."""
    f = Fleet(pg_db_url, tmp_path)
    try:
        yield f
    finally:
        f.close()


# ---------------------------------------------------------------- helpers
def workload(n: int) -> list[tuple[dict[str, Any], int]]:
    """``n`` cheap submissions with the verdict each must get: half Accepted (stdin
    doubled, checked against expected_output), then Wrong Answer, NZEC, Compilation
    Error (C) and Time Limit Exceeded (a tiny CPU limit)."""
    double = "print(int(input()) * 2)"
    out: list[tuple[dict[str, Any], int]] = []
    for i in range(n):
        k = i % 20
        if k < 10:
            body = {"source_code": double, "stdin": str(i), "expected_output": str(2 * i)}
            out.append(({**body, "language_id": PYTHON}, ACCEPTED))
        elif k < 14:
            body = {"source_code": double, "stdin": str(i), "expected_output": str(2 * i + 1)}
            out.append(({**body, "language_id": PYTHON}, WRONG))
        elif k < 17:
            src = f"import sys\nprint({i})\nsys.exit(1)"
            out.append(({"source_code": src, "language_id": PYTHON}, NZEC))
        elif k == 17:
            src = f"int main(void) {{ return {i} }}"  # no semicolon
            out.append(({"source_code": src, "language_id": C}, CE))
        elif k == 18:
            body = {"source_code": "while True: pass", "cpu_time_limit": 0.2}
            out.append(({**body, "cpu_extra_time": 0.2, "language_id": PYTHON}, TLE))
        else:
            body = {"source_code": f"print('ok{i}')", "expected_output": f"ok{i}"}
            out.append(({**body, "language_id": PYTHON}, ACCEPTED))
    return out


def post(node: Node, body: dict[str, Any], query: str = "", **kw: Any) -> httpx.Response:
    kw.setdefault("timeout", 60)
    return httpx.post(f"{node.url}/submissions{query}", json=body, **kw)


def get(node: Node, token: str) -> dict[str, Any]:
    r = httpx.get(f"{node.url}/submissions/{token}?fields={RESULT_FIELDS}", timeout=60)
    r.raise_for_status()
    return dict(r.json())


def wait_final(node: Node, token: str, timeout: float = 120) -> dict[str, Any]:
    return wait_until(
        lambda: (r := get(node, token)) and FINAL(r["status"]["id"]) and r,
        timeout,
        f"{token} final on {node.name}",
    )


async def sandboxes_gone(fleet: Fleet, timeout: float = 60) -> None:
    """Nothing left of the fleet's sandboxes once all stopped: none of a process that
    stopped normally; those of SIGKILLed ones end by themselves (AutoRemove) or go to
    the reaper (sandboxkit reap, or the next pool that opens), as for the SDK."""
    assert not any(p.alive() for p in fleet.procs)
    clean, dead = fleet.owners(killed=False), fleet.owners(killed=True)
    await asyncio.to_thread(
        wait_until, lambda: not containers_of(clean), timeout, "sandboxes removed", 0.5
    )
    deadline = time.monotonic() + timeout
    while dead and containers_of(dead) and time.monotonic() < deadline:
        engine = connect()
        try:
            report = await reap(engine)
        finally:
            await engine.close()
        assert not report.failed, report.failed
        await asyncio.sleep(0.5)
    assert containers_of(dead) == []


async def db_rows(db_url: str) -> list[dict[str, Any]]:
    return await query(db_url, "SELECT token, status_id, attempt FROM submissions")


async def assert_one_final_each(db_url: str, tokens: dict[str, int]) -> list[dict[str, Any]]:
    """Through the database: one row per token, every row final, every accepted token
    there with the status the API gave."""
    dups = await query(
        db_url, "SELECT token, count(*) AS n FROM submissions GROUP BY token HAVING count(*) > 1"
    )
    assert dups == []
    rows = await db_rows(db_url)
    unfinished = [r for r in rows if not FINAL(r["status_id"])]
    assert unfinished == []
    by_token = {r["token"]: r for r in rows}
    missing = [t for t in tokens if t not in by_token]
    assert missing == []
    wrong = {
        t: (by_token[t]["status_id"], s) for t, s in tokens.items() if by_token[t]["status_id"] != s
    }
    assert wrong == {}
    return rows


# ---------------------------------------------------------------- (a) one fleet
async def test_two_nodes_two_workers_share_one_database(fleet: Fleet) -> None:
    a, b = fleet.node(name="node-a"), fleet.node(name="node-b")
    w1 = fleet.worker(concurrency=2, name="w1")
    w2 = fleet.worker(concurrency=1, name="w2")
    fleet.wait_workers(a, 2)

    # written through A, judged by a worker, read from B the same
    tokens: dict[str, int] = {}
    for body, status in workload(20):
        r = post(a, body)
        assert r.status_code == 201, r.text
        tokens[r.json()["token"]] = status
    for token, status in tokens.items():
        on_b = wait_final(b, token)
        assert on_b["status"]["id"] == status, on_b
        assert get(a, token) == on_b
    # ?wait=true on B, read from A; base64 both ways
    r = post(
        b,
        {"source_code": "cHJpbnQoImhpIik=", "language_id": PYTHON},
        "?wait=true&base64_encoded=true",
    )
    assert r.status_code == 201, r.text
    waited = r.json()
    assert waited["status"]["id"] == ACCEPTED and waited["stdout"] == "aGkK", waited
    again = httpx.get(
        f"{a.url}/submissions/{waited['token']}?base64_encoded=true&fields=stdout,status",
        timeout=30,
    ).json()
    assert again == {"stdout": "aGkK", "status": {"id": 3, "description": "Accepted"}}
    # batch through A, read as a batch from B
    batch = httpx.post(
        f"{a.url}/submissions/batch",
        json={
            "submissions": [{"source_code": f"print({i})", "language_id": PYTHON} for i in range(3)]
        },
        timeout=30,
    )
    assert batch.status_code == 201, batch.text
    batch_tokens = [x["token"] for x in batch.json()]
    for t in batch_tokens:
        wait_final(a, t)
    read = httpx.get(
        f"{b.url}/submissions/batch?tokens={','.join(batch_tokens)}&fields=stdout", timeout=30
    ).json()
    assert read == {"submissions": [{"stdout": f"{i}\n"} for i in range(3)]}

    # /workers: Judge0's shape, from heartbeats, the same on both nodes
    # (heartbeats every few seconds: "working" may lag the last result by one beat)
    for node in (a, b):
        rows = node.workers()
        assert len(rows) == 1 and set(rows[0]) == WORKERS_KEYS, rows
        assert rows[0]["available"] == 3, rows  # 2 + 1: the live workers' concurrency
        row = wait_until(
            lambda node=node: (r := node.workers()[0])["working"] == 0 and r,
            30,
            f"workers idle on {node.name}",
            0.25,
        )
        assert row["size"] == 0 and row["idle"] == 3 and row["available"] == 3, row
        assert row["paused"] == 0 and row["failed"] == 0, row

    # /metrics on a node and on each worker: Prometheus text with the documented names
    judged = len(tokens) + 1 + len(batch_tokens)
    accepted = sum(s == ACCEPTED for s in tokens.values()) + 1 + len(batch_tokens)
    node_m = parse_metrics(a.metrics())
    assert node_m["sandboxkit_queue_depth"]["type"] == "gauge"
    assert sample(node_m, "sandboxkit_queue_depth") == 0
    assert node_m["sandboxkit_submissions"]["type"] == "gauge"
    assert sample(node_m, "sandboxkit_submissions", status="Accepted") == accepted
    assert sample(node_m, "sandboxkit_submissions", status="Wrong Answer") == sum(
        s == WRONG for s in tokens.values()
    )
    assert node_m["sandboxkit_workers"]["type"] == "gauge"
    assert sample(node_m, "sandboxkit_workers") == 2
    for w in (w1, w2):
        wm = parse_metrics(w.metrics())
        hist = wm["sandboxkit_judging_seconds"]
        assert hist["type"] == "histogram"
        names = {s[0] for s in hist["samples"]}
        assert {
            "sandboxkit_judging_seconds_bucket",
            "sandboxkit_judging_seconds_sum",
            "sandboxkit_judging_seconds_count",
        } <= names
        inf = sample(wm, "sandboxkit_judging_seconds_bucket", le="+Inf")
        assert inf == sample(wm, "sandboxkit_judging_seconds_count") is not None

    def observed() -> float:
        return sum(
            sample(parse_metrics(w.metrics()), "sandboxkit_judging_seconds_count") or 0
            for w in (w1, w2)
        )

    # each submission judged once, by one of them (observed just after its result is
    # stored, so the last one may lag the answer a little)
    wait_until(lambda: observed() >= judged, 30, f"{judged} judgings observed")
    assert observed() == judged

    # the leak check below sees a worker's sandboxes (its warm pool) while it runs
    assert containers_of([w1.owner]) and containers_of([w2.owner])

    # SIGTERM: a worker finishes and exits 0, and leaves the count
    assert w1.stop() == 0, w1.tail()
    assert w2.stop() == 0, w2.tail()
    wait_until(
        lambda: sample(parse_metrics(a.metrics()), "sandboxkit_workers") == 0, 30, "no workers"
    )
    assert a.workers()[0]["available"] == 0
    fleet.close()
    await sandboxes_gone(fleet)

    # --log-format json: every line of every process is one JSON object, and each line
    # that names one of our tokens carries it as "token"
    everything = {*tokens, waited["token"], *batch_tokens}
    for p in fleet.procs:
        lines = [line for line in p.log_text().splitlines() if line.strip()]
        parsed = p.log_lines()
        assert len(parsed) == len(lines), f"{p.name}: not all JSON:\n{p.tail()}"
        for line in parsed:
            named = {t for t in everything if t in str(line.get("message", ""))}
            assert not named or line.get("token") in named, (p.name, line)
    worker_lines = [line for w in (w1, w2) for line in w.log_lines()]
    assert everything <= {line.get("token") for line in worker_lines}


# ---------------------------------------------------------------- (b) chaos
async def test_chaos_every_accepted_submission_ends_once_with_its_verdict(
    fleet: Fleet, pg_cluster: Postgres, pg_db_url: str
) -> None:
    n_subs, n_clients = 300, 8
    a, b = fleet.node(name="node-a"), fleet.node(name="node-b")
    nodes = [a, b]
    warm = ("python", "c")
    w1 = fleet.worker(concurrency=2, name="w1", warm=warm)
    fleet.worker(concurrency=2, name="w2", warm=warm)
    fleet.wait_workers(a, 2)

    work = workload(n_subs)
    todo = iter(enumerate(work))
    tokens: dict[str, int] = {}  # every token that got a 201 -> its expected status
    results: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    done = 0
    retried: Counter[str] = Counter()  # requests that met a dead node or a 503, retried

    async def call(
        http: httpx.AsyncClient, start: int, method: str, path: str, **kw: Any
    ) -> httpx.Response:
        """One request with fail-over, as a client of the fleet retries: on a connection
        error or a 502/503/504 the next node, until an answer (bounded)."""
        deadline = time.monotonic() + 180
        for i in itertools.count(start):
            node = nodes[i % len(nodes)]
            try:
                r = await http.request(method, node.url + path, timeout=30, **kw)
                if r.status_code not in (502, 503, 504):
                    return r
                retried[str(r.status_code)] += 1
            except httpx.TransportError as exc:
                retried[type(exc).__name__] += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"{method} {path}: no node answered within 180 s")
            if (i - start) % len(nodes) == len(nodes) - 1:  # each node tried: a pause
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    async def client(c: int) -> None:
        nonlocal done
        async with httpx.AsyncClient() as http:
            for i, (body, status) in todo:
                r = await call(http, c + i, "POST", "/submissions", json=body)
                if r.status_code != 201:
                    failures.append(f"POST {i}: {r.status_code} {r.text}")
                    continue
                token = r.json()["token"]
                tokens[token] = status
                deadline = time.monotonic() + 180
                while True:
                    g = await call(
                        http, c + i, "GET", f"/submissions/{token}?fields={RESULT_FIELDS}"
                    )
                    assert g.status_code == 200, g.text
                    if FINAL(g.json()["status"]["id"]):
                        results[token] = g.json()
                        break
                    assert time.monotonic() < deadline, f"{token} not final within 180 s"
                    await asyncio.sleep(0.1)
                done += 1

    async def until_done(count: int) -> None:
        await await_until(lambda: asyncio.sleep(0, done >= count), 300, f"{count} judged", 0.05)

    async def chaos() -> None:
        await until_done(40)
        await asyncio.to_thread(w1.kill, signal.SIGKILL)
        await asyncio.to_thread(fleet.worker, concurrency=2, name="w3", warm=warm)
        await until_done(110)
        await asyncio.to_thread(a.kill, signal.SIGKILL)
        await until_done(180)
        await asyncio.to_thread(pg_cluster.crash)
        assert not await asyncio.to_thread(pg_cluster.running)
        await asyncio.to_thread(pg_cluster.start)

    clients = [asyncio.create_task(client(c)) for c in range(n_clients)]
    await asyncio.gather(chaos(), *clients)

    assert failures == []
    assert len(tokens) == n_subs and len(results) == n_subs
    assert retried["ConnectError"] > 0  # the dead node was met, and failed over
    wrong = {
        t: (results[t]["status"], s) for t, s in tokens.items() if results[t]["status"]["id"] != s
    }
    assert wrong == {}
    # read again from the surviving node: every token final, with the same answer
    for token in list(tokens)[::10]:
        assert get(b, token) == results[token]
    rows = await assert_one_final_each(pg_db_url, tokens)
    # a POST whose answer was lost in the outage may have stored a submission the client
    # never learnt of: it is judged all the same (no row left unfinished, checked above)
    assert len(rows) >= n_subs
    print(
        f"chaos: {len(tokens)} accepted, retried requests {dict(retried)}, "
        f"{sum(r['attempt'] > 1 for r in rows)} judged again"
    )
    fleet.close()
    await sandboxes_gone(fleet)
    # the workers' logs agree: no token's result stored twice (a worker logs each result
    # it stored; only the SIGKILLed one, concurrency 2, may have died before logging)
    stored = Counter(
        line["token"]
        for w in fleet.procs
        if isinstance(w, Worker)
        for line in w.log_lines()
        if "token" in line and ": status " in str(line.get("message", ""))
    )
    assert [t for t, n in stored.items() if n > 1] == []
    assert len(stored) >= len(rows) - 2


# ---------------------------------------------------------------- (c) admission
async def test_queue_full_is_503_and_the_per_user_cap_429(fleet: Fleet) -> None:
    node = fleet.node("--max-in-flight-per-user", "2", max_queue_size=3)
    body = {"source_code": "print(1)", "language_id": PYTHON}
    alice, bob, carol = ({"X-Auth-User": u} for u in ("alice", "bob", "carol"))
    first = [post(node, body, headers=alice) for _ in range(2)]
    assert [r.status_code for r in first] == [201, 201], [r.text for r in first]
    capped = post(node, body, headers=alice)
    assert capped.status_code == 429, capped.text
    assert isinstance(capped.json().get("error"), str), capped.text
    r = post(node, body, headers=bob)
    assert r.status_code == 201, r.text  # another user: not capped; the queue holds 3 now
    full = post(node, body, headers=carol)
    assert full.status_code == 503, full.text
    assert full.json() == {"error": "queue is full"}
    # a refused submission is not stored: only the three
    tokens = [x.json()["token"] for x in (*first, r)]
    assert sample(parse_metrics(node.metrics()), "sandboxkit_queue_depth") == 3

    # a worker drains the queue: both limits let submissions in again
    fleet.worker(concurrency=2, name="w1")
    for token in tokens:
        assert wait_final(node, token)["status"]["id"] == ACCEPTED
    again = post(node, body, "?wait=true", headers=alice)
    assert again.status_code == 201 and again.json()["status"]["id"] == ACCEPTED, again.text
    fleet.close()
    await sandboxes_gone(fleet)


# ---------------------------------------------------------------- (d) leases
async def test_a_worker_killed_while_judging_is_replaced_after_its_lease(
    fleet: Fleet, pg_db_url: str
) -> None:
    node = fleet.node()
    a = fleet.worker(concurrency=1, lease_seconds=3, name="wa")
    b = fleet.worker(concurrency=1, lease_seconds=3, name="wb")
    fleet.wait_workers(node, 2)
    # b frozen while the submission is claimed: a takes it
    b.kill(signal.SIGSTOP)
    try:
        body = {
            "source_code": "import time\ntime.sleep(4)\nprint('slept')",
            "language_id": PYTHON,
            "wall_time_limit": 10,
            "expected_output": "slept",
        }
        r = post(node, body)
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        wait_until(lambda: get(node, token)["status"]["id"] == 2, 60, "Processing")
    finally:
        b.kill(signal.SIGCONT)
    a.kill(signal.SIGKILL)
    # b, the only worker left, judges it again once a's lease has expired
    done = wait_final(node, token, timeout=90)
    # and a's heartbeat lapses: only b is counted
    wait_until(lambda: node.workers()[0]["available"] == 1, 60, "a no longer counted", 0.25)
    assert done["status"]["id"] == ACCEPTED and done["stdout"] == "slept\n", done
    (row,) = await query(pg_db_url, "SELECT status_id, attempt FROM submissions")
    assert row["status_id"] == ACCEPTED and row["attempt"] >= 2, row
    assert b.stop() == 0, b.tail()
    fleet.close()
    await sandboxes_gone(fleet)


async def test_sigterm_finishes_in_flight_work_and_claims_no_more(
    fleet: Fleet, pg_db_url: str
) -> None:
    node = fleet.node()
    w = fleet.worker(concurrency=1, name="w1")
    fleet.wait_workers(node, 1)
    slow = post(
        node,
        {"source_code": "import time\ntime.sleep(3)\nprint('done')", "language_id": PYTHON},
    ).json()["token"]
    wait_until(lambda: get(node, slow)["status"]["id"] == 2, 60, "Processing")
    queued = post(node, {"source_code": "print(2)", "language_id": PYTHON}).json()["token"]
    w.kill(signal.SIGTERM)
    assert w.proc.wait(60) == 0, w.tail()
    # no worker left: the first one was finished by the stopping worker, not the second
    finished = get(node, slow)
    assert finished["status"]["id"] == ACCEPTED and finished["stdout"] == "done\n", finished
    assert get(node, queued)["status"]["id"] == 1
    fleet.worker(concurrency=1, name="w2")
    assert wait_final(node, queued)["status"]["id"] == ACCEPTED
    rows = await query(pg_db_url, "SELECT token, attempt FROM submissions WHERE token = $1", slow)
    assert rows[0]["attempt"] == 1, rows
    fleet.close()
    await sandboxes_gone(fleet)


async def test_a_late_write_after_the_lease_is_refused(fleet: Fleet, pg_db_url: str) -> None:
    """A worker frozen (SIGSTOP) past its lease while judging: another worker judges the
    submission again and writes its result; the frozen one, thawed, finishes its run but
    its stale write is refused: the stored result is the second worker's."""
    node = fleet.node()
    a = fleet.worker(concurrency=1, lease_seconds=3, name="wa")
    src = "import time, uuid\nprint(uuid.uuid4())\ntime.sleep(2)"
    body = {"source_code": src, "language_id": PYTHON, "wall_time_limit": 10}
    token = post(node, body).json()["token"]
    wait_until(lambda: get(node, token)["status"]["id"] == 2, 60, "Processing")
    a.kill(signal.SIGSTOP)
    try:
        b = fleet.worker(concurrency=1, lease_seconds=3, name="wb")
        second = wait_final(node, token, timeout=90)
        assert second["status"]["id"] == ACCEPTED, second
    finally:
        a.kill(signal.SIGCONT)
    # a ends its in-flight run (its write refused) and exits 0 on SIGTERM
    assert a.stop() == 0, a.tail()
    assert get(node, token) == second
    # and a said so, about that token (lease lost, or its result refused)
    assert any(
        line.get("token") == token and line.get("level") == "WARNING" for line in a.log_lines()
    ), a.tail()
    (row,) = await query(pg_db_url, "SELECT status_id, attempt FROM submissions")
    assert row["status_id"] == ACCEPTED and row["attempt"] >= 2, row
    assert b.stop() == 0, b.tail()
    fleet.close()
    await sandboxes_gone(fleet)


async def burst(nodes: list[Node], users: list[str]) -> Counter[int]:
    """One POST per user, all at once, spread over ``nodes``: the statuses answered."""
    body = {"source_code": "print(1)", "language_id": PYTHON}
    async with httpx.AsyncClient() as http:
        answers = await asyncio.gather(
            *(
                http.post(
                    f"{nodes[i % len(nodes)].url}/submissions",
                    json=body,
                    headers={"X-Auth-User": user},
                    timeout=60,
                )
                for i, user in enumerate(users)
            )
        )
    return Counter(r.status_code for r in answers)


async def test_the_per_user_cap_holds_across_nodes_under_concurrent_posts(fleet: Fleet) -> None:
    """The cap is the fleet's, not a node's: one user posting 24 at once through two
    nodes gets exactly 3 in (no worker drains them)."""
    nodes = [fleet.node("--max-in-flight-per-user", "3", name=f"node-{c}") for c in "ab"]
    assert await burst(nodes, ["alice"] * 24) == {201: 3, 429: 21}
    assert await burst(nodes, ["bob"] * 2) == {201: 2}


async def test_the_queue_cap_holds_across_nodes_under_concurrent_posts(fleet: Fleet) -> None:
    """40 users posting at once through two nodes, with room for 5 in the queue: exactly
    5 get in, the queue ends at its cap (no worker drains it)."""
    nodes = [fleet.node(max_queue_size=5, name=f"node-{c}") for c in "ab"]
    assert await burst(nodes, [f"user{i}" for i in range(40)]) == {201: 5, 503: 35}
    assert sample(parse_metrics(nodes[0].metrics()), "sandboxkit_queue_depth") == 5


async def test_postgres_down_is_a_503_then_the_node_carries_on(
    fleet: Fleet, pg_cluster: Postgres
) -> None:
    """PostgreSQL away for longer than a node retries inside: a 503 (never a hang or a
    500); back again, the same node answers as before without a restart."""
    node = fleet.node()
    body = {"source_code": "print(1)", "language_id": PYTHON}
    before = post(node, body)
    assert before.status_code == 201, before.text
    pg_cluster.stop()
    try:
        async with httpx.AsyncClient(timeout=180) as http:  # a write and a read at once
            during, read = await asyncio.gather(
                http.post(f"{node.url}/submissions", json=body),
                http.get(f"{node.url}/submissions/{before.json()['token']}"),
            )
        assert during.status_code == 503, during.text
        assert isinstance(during.json().get("error"), str), during.text
        assert read.status_code == 503, read.text
    finally:
        pg_cluster.start()
    after = wait_until(
        lambda: (r := post(node, body)).status_code == 201 and r, 60, "a 201 again", 0.5
    )
    token = after.json()["token"]
    assert get(node, token)["status"]["id"] == 1
    assert get(node, before.json()["token"])["status"]["id"] == 1
    assert node.alive()


async def test_nodes_and_workers_started_at_once_migrate_one_fresh_database(
    fleet: Fleet, pg_db_url: str
) -> None:
    """Schema migrations at start are safe when several processes start together on an
    empty database: all come up, the schema is there once, and they work together."""
    procs = await asyncio.gather(
        *(asyncio.to_thread(fleet.node, name=f"node-{i}") for i in range(3)),
        *(asyncio.to_thread(fleet.worker, concurrency=1, name=f"w{i}") for i in range(2)),
    )
    nodes = [p for p in procs if isinstance(p, Node)]
    assert len(nodes) == 3 and all(p.alive() for p in procs)
    versions = await query(pg_db_url, "SELECT version FROM sandboxkit_schema ORDER BY version")
    assert [r["version"] for r in versions] == list(range(1, len(versions) + 1))
    fleet.wait_workers(nodes[0], 2)
    tokens = [post(n, {"source_code": "print(5)", "language_id": PYTHON}) for n in nodes]
    for r, n in zip(tokens, reversed(nodes), strict=True):
        assert r.status_code == 201, r.text
        assert wait_final(n, r.json()["token"])["stdout"] == "5\n"
