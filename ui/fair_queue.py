"""Fair queueing: one client holds only a few places in the queue, so that a script with many
threads cannot fill it and turn every other visitor away.

The queue (ui/gradio_internals.py) writes one joke at a time and holds QUEUE_SIZE requests.
Without this rule, one program sending 40 requests at once took all the places, and an
ordinary visitor beside it got 2 jokes out of 10, the rest refused as "queue full". Now a
client's requests beyond its share are refused at once with HTTP 429 and a message that
says why, while other visitors keep their places.

A client is told apart twice, as Gradio can tell them:

- by its session hash (one browser tab, or one gradio_client.Client): at most
  MAX_WAITING_PER_SESSION requests waiting or being served;
- by its IP address, since a script can send each request under a new session hash (a raw
  POST to /gradio_api/call/<name> without one gets a fresh hash every time): at most
  MAX_WAITING_PER_ADDRESS, a larger cap because people behind one address (a school, an
  office, a mobile network) share it.

A loopback address is exempt from the address rule: it is this machine's own programs (the
tests, the benchmarks: every local client is 127.0.0.1) or a reverse proxy on this machine.
Such a proxy passes each visitor's address in X-Forwarded-For, which uvicorn (Gradio's
server) trusts from loopback only, so visitors behind it are still told apart. A proxy on
another machine must be named in FORWARDED_ALLOW_IPS (uvicorn's setting), or every visitor
would share the proxy's address and its cap.

Within its share, a client takes turns with the others (take_turns): Gradio's queue serves
in arrival order, so a client's three places would make everyone wait for its three jokes.

How it works: the rule wraps the push of Gradio's queue (gradio.queueing.Queue.push, the one
door of /gradio_api/queue/join, /gradio_api/call/<name> and /gradio_api/call/v2/<name>),
and counts the client's events waiting in the queue or being processed. Counting, joining
and ordering happen under one lock, so requests sent at the same moment cannot all slip in
before any is counted. Written against Gradio 6.31.0: on an upgrade, check the Queue
attributes read by `pending` and Queue.push's signature.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import fastapi
from fastapi import HTTPException, status
from gradio.queueing import Event, Queue

# Requests one session may have waiting or being served at once: a visitor waits for a joke
# or two and clicks around meanwhile (the page's clicks never queue more than one each); a
# program that wants more jokes at once is asking for more than its share.
MAX_WAITING_PER_SESSION = 3
# Requests one IP address may have waiting or being served: three sessions' worth, as
# several people may share an address. Loopback addresses are exempt (see above).
MAX_WAITING_PER_ADDRESS = 3 * MAX_WAITING_PER_SESSION

Push = Callable[..., Awaitable[tuple[bool, Any, str]]]  # Queue.push(body, request, username)


def address_of(request: fastapi.Request | None) -> str | None:
    """The client's IP address, or None where the address rule does not apply: no address
    known, or a loopback one (this machine's own programs, or a proxy that forwards none)."""
    host = request.client.host if request is not None and request.client else None
    if host is None:
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host  # a name, not an address: still one client
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return None if ip.is_loopback else str(ip)


def pending(queue: Queue) -> Iterator[Event]:
    """Every event that holds a place: waiting in the queue, or being processed."""
    for event_queue in queue.event_queue_per_concurrency_id.values():
        yield from event_queue.queue
    for job in queue.active_jobs:
        yield from job or ()


def over_share(queue: Queue, session_hash: str | None, address: str | None) -> str | None:
    """Why one more request from this client would be more than its share, or None."""
    in_session = in_address = 0
    for event in pending(queue):
        in_session += session_hash is not None and event.session_hash == session_hash
        in_address += address is not None and address_of(event.request) == address
    if in_session >= MAX_WAITING_PER_SESSION:
        return (
            f"You already have {in_session} requests waiting: wait for them before asking for more."
        )
    if in_address >= MAX_WAITING_PER_ADDRESS:
        return (
            f"Your address already has {in_address} requests waiting: wait for them before "
            "asking for more."
        )
    return None


def share_fairly(queue: Queue) -> None:
    """Make `queue` refuse, with HTTP 429 and a message, a request beyond its client's share.

    Gradio's routes call `queue.push` for every request that joins the queue; an
    HTTPException raised there is answered as JSON ({"detail": message}), which the page
    shows as an error and a program reads from the response. gradio_client raises
    httpx.HTTPStatusError (status 429) and does not show the message.
    """
    push: Push = queue.push
    lock = asyncio.Lock()

    async def fair_push(
        body: Any, request: fastapi.Request, username: str | None
    ) -> tuple[bool, Any, str]:
        async with lock:  # counted and joined as one step
            full = queue.max_size is not None and len(queue) >= queue.max_size
            # A full queue is Gradio's to refuse ("queue full", 503): it says the most.
            refusal = None if full else over_share(queue, body.session_hash, address_of(request))
            if refusal is not None:
                raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail=refusal)
            joined = await push(body, request, username)
            if joined[0]:
                take_turns(queue, joined[1])
            return joined

    queue.push = fair_push  # type: ignore[method-assign]


def take_turns(queue: Queue, event_id: str) -> None:
    """Order the waiting events of `event_id`'s queue so that clients take turns: each
    session's first waiting event before anyone's second, and so on (arrival order within a
    turn; an event of the same queue being processed counts as its session's first).

    Gradio's queue is first come, first served: a client holding its three places would make
    everyone wait for its three jokes; taking turns, a visitor waits for one joke of each
    other client. Runs between two awaits, so Gradio never sees the queue half sorted.
    """
    event = queue.event_ids_to_events.get(event_id)
    if event is None:  # already done
        return
    waiting = queue.event_queue_per_concurrency_id[event.concurrency_id].queue
    running = [e for job in queue.active_jobs for e in job or ()]
    turns = Counter(e.session_hash for e in running if e.concurrency_id == event.concurrency_id)
    keyed = []
    for arrival, pending_event in enumerate(waiting):
        keyed.append((turns[pending_event.session_hash], arrival, pending_event))
        turns[pending_event.session_hash] += 1
    waiting[:] = [pending_event for *_, pending_event in sorted(keyed, key=lambda k: k[:2])]
