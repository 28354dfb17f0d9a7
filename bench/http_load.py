"""The load generator of the benchmarks: keep-alive HTTP/1.1 on raw asyncio streams (run it
under uvloop), cheap for the client, in a closed or an open loop."""

import asyncio
import itertools
import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

ANSWER_TIMEOUT = 10.0  # seconds: a request unanswered by then counts as an error


def submissions_of(url: str, path: str, spec: dict) -> Callable[[int], bytes]:
    """Request i: POST ``spec``, with a fresh Idempotency-Key on every other request."""
    body, prefix = json.dumps(spec).encode(), uuid.uuid4().hex[:12]
    head = (f"POST {path} HTTP/1.1\r\nHost: {url.removeprefix('http://')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")  # fmt: skip
    key = lambda i: f"Idempotency-Key: {prefix}-{i}\r\n" if i % 2 == 0 else ""  # noqa: E731
    return lambda i: f"{head}{key(i)}\r\n".encode() + body


def due_time(began: float, slot: int, rate: float) -> float:
    """When request ``slot`` of a constant-rate schedule is due: from the start and the index,
    never from the previous send, so a late request does not push back the ones after it."""
    return began + slot / rate


@dataclass
class LoadResult:
    rate: float  # answers per second, over the whole run
    latencies: list[float] = field(default_factory=list)  # seconds, of every answer
    errors: int = 0  # answers other than 202, and requests left without an answer
    unanswered: int = 0  # of those errors, the requests that got no answer
    accepted: list[bytes] = field(default_factory=list)  # the bodies of the 202s

    @property
    def sent(self) -> int:
        return len(self.latencies) + self.unanswered


async def load(
    url: str,
    requests: Callable[[int], bytes],
    connections: int,
    seconds: float | None = None,
    rate: float | None = None,
    count: int | None = None,
) -> LoadResult:
    """Closed loop (rate None: each connection sends as soon as it has its answer) or open
    loop (request i is due at start + i/rate; its latency counts from then, as in wrk2, so a
    stall shows in every request it delays). Stops after ``seconds`` or ``count`` requests."""
    loop, out = asyncio.get_running_loop(), LoadResult(rate=0.0)
    slots = itertools.count()
    host, port = url.removeprefix("http://").split(":")
    began = loop.time() + 0.05
    end = began + seconds if seconds is not None else math.inf
    last = count if count is not None else math.inf

    async def answer(reader, writer, request: bytes) -> tuple[bytes, bytes]:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")  # uvicorn always sends Content-Length
        body = await reader.readexactly(int(re.search(rb"(?i)content-length: *(\d+)", head)[1]))
        return head[9:12], body

    async def connection():
        reader, writer = await asyncio.open_connection(host, int(port))
        for slot in slots:  # shared by the connections: each takes the next request
            due = due_time(began, slot, rate) if rate else loop.time()
            if slot >= last or due >= end:
                break
            await asyncio.sleep(due - loop.time())
            try:
                status, body = await asyncio.wait_for(
                    answer(reader, writer, requests(slot)), ANSWER_TIMEOUT
                )
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                out.errors, out.unanswered = out.errors + 1, out.unanswered + 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, int(port))
                continue
            out.latencies.append(loop.time() - due)
            if status == b"202":
                out.accepted.append(body)
            else:
                out.errors += 1
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    out.rate = len(out.latencies) / (loop.time() - began)
    return out
