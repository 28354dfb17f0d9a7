"""The load generator against a tiny HTTP server of the test's own that stalls once."""

import asyncio
import contextlib
import json

import pytest
from http_load import due_time, load

STALL_AT, STALL = 10, 0.3  # the request the server holds, and for how long


def test_due_times_follow_the_index_not_the_previous_send():
    assert [due_time(5.0, i, rate=4) for i in range(5)] == [5.0, 5.25, 5.5, 5.75, 6.0]
    assert due_time(0.0, 1999, rate=100) == pytest.approx(19.99)


async def stalling_server(statuses: dict[int, bytes]):
    """Answers 202 (or statuses[i] for request i) with {"id": "<i>"}; holds request
    STALL_AT for STALL seconds, as a server pausing would."""
    served = 0

    async def handle(reader, writer):
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await serve(reader, writer)

    async def serve(reader, writer):
        nonlocal served
        while await reader.readuntil(b"\r\n\r\n"):
            i, served = served, served + 1
            if i == STALL_AT:
                await asyncio.sleep(STALL)
            body = b'{"id": "%d"}' % i
            status = statuses.get(i, b"202 Accepted")
            writer.write(b"HTTP/1.1 %s\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body))
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def run(rate, count, statuses=None, connections=1):
    async def main():
        server, url = await stalling_server(statuses or {})
        async with server:
            return await load(url, lambda i: b"GET / HTTP/1.1\r\n\r\n", connections,
                              rate=rate, count=count)  # fmt: skip

    return asyncio.run(main())


def test_open_loop_counts_latency_from_the_due_time_so_a_stall_delays_the_requests_after_it():
    result = run(rate=100, count=60)
    assert result.sent == 60 and len(result.accepted) == 60 and result.errors == 0
    # Due every 10 ms: the ~30 requests due during the 0.3 s stall all waited behind it.
    delayed = [latency for latency in result.latencies if latency > 0.05]
    assert len(delayed) >= 20, sorted(result.latencies)[-25:]


def test_closed_loop_stops_after_count_requests_and_counts_answers_other_than_202():
    result = run(rate=None, count=20, statuses={3: b"500 Internal Server Error"}, connections=2)
    assert result.sent == 20 and result.errors == 1 and len(result.accepted) == 19
    assert sorted(int(json.loads(body)["id"]) for body in result.accepted) == [
        i for i in range(20) if i != 3
    ]
