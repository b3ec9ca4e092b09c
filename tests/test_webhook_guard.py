"""Webhooks that cannot be turned inward (issue 24, item 4): an internal address is refused at
create and, for a name, again at delivery by the resolver the sender connects through;
`last_error` says no more than "HTTP <status>", "timeout" or "connection failed"; a slow
receiver (host and port) never delays another's delivery."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from fanslymotion.webhook_guard import is_inward

from .bot_stack import wait_until
from .conftest import Client, ServiceFactory
from .test_process import free_port
from .test_webhooks import LOOPBACK, SECRET, Receiver, receiver

__all__ = ["receiver"]  # the fixture, shared with test_webhooks


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10:8080/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fd00:ec2::254]/hook",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
        "http://0.0.0.0/hook",
    ],
)
async def test_an_inward_webhook_is_refused_at_create(
    start_service: ServiceFactory, url: str
) -> None:
    client = await start_service(webhook_secret=SECRET)
    status, body = await client.create(webhook_url=url)
    assert status == 422 and "internal address" in body["error"], body
    assert "FANSLYMOTION_WEBHOOK_ALLOW_HOSTS" in body["error"]
    _, listed, _ = await client.request("GET", "/jobs")
    assert listed["jobs"] == []  # nothing was queued


async def test_a_name_that_does_not_resolve_is_refused(start_service: ServiceFactory) -> None:
    client = await start_service(webhook_secret=SECRET)
    status, body = await client.create(webhook_url="https://no-such-host.invalid/hook")
    assert status == 422 and "cannot be resolved" in body["error"]


def test_outward_addresses_pass_and_inward_ones_do_not() -> None:
    outward = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"]
    inward = ["127.0.0.2", "172.16.5.4", "fe80::1", "ff02::1", "240.0.0.1", "::", "::ffff:10.0.0.1"]
    assert not any(is_inward(ipaddress.ip_address(a)) for a in outward)
    assert all(is_inward(ipaddress.ip_address(a)) for a in inward)


async def _hooked(client: Client, url: str, user_id: int) -> str:
    status, body = await client.create(
        webhook_url=url, webhook_events=["cancelled"], user_id=user_id, duration=12
    )
    assert status == 201, body
    return str(body["job_id"])


async def _cancel(client: Client, job_id: str) -> str:
    status, _, _ = await client.request("POST", f"/job/{job_id}/cancel")
    assert status == 200
    return job_id


async def _cancelled_hook(client: Client, url: str, user_id: int) -> str:
    return await _cancel(client, await _hooked(client, url, user_id))


async def _webhook_state(client: Client, job_id: str, field: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            _, body, _ = await client.request("GET", f"/job/status/{job_id}")
            if body["webhook"][field]:
                return dict(body["webhook"])
            await asyncio.sleep(0.05)


async def test_a_name_turned_inward_after_create_is_not_reached(
    start_service: ServiceFactory, receiver: Receiver
) -> None:
    client = await start_service(
        webhook_secret=SECRET, webhook_allow_hosts="localhost", webhook_backoff=0.2
    )
    url = receiver.url.replace(LOOPBACK, "localhost")
    first = await _cancelled_hook(client, url, 1)
    await receiver.wait_for(lambda ds: len(ds) == 1)  # allowed: delivered
    assert receiver.deliveries[0].body["job_id"] == first
    # The name is no longer allowed (as a name that resolved outward at create and inward
    # now): the sender's resolver leaves its addresses out and never connects. (Another
    # receiver: no kept-alive connection to the first one's port is reused.)
    other = Receiver()
    await other.start()
    try:
        second = await _hooked(client, other.url.replace(LOOPBACK, "localhost"), 2)
        client.service.settings.webhook_allow_hosts = []
        await _cancel(client, second)
        hook = await _webhook_state(client, second, "failed")
        assert hook["last_error"] == "connection failed" and hook["delivered"] == 0
        assert not other.deliveries
    finally:
        await other.close()


async def test_last_error_names_no_more_than_connection_failed(
    start_service: ServiceFactory,
) -> None:
    client = await start_service(
        webhook_secret=SECRET, webhook_allow_hosts=LOOPBACK, webhook_backoff=0.2
    )
    job_id = await _cancelled_hook(client, f"http://127.0.0.1:{free_port()}/hook", 1)
    hook = await _webhook_state(client, job_id, "attempts")
    assert hook["last_error"] == "connection failed"


async def test_a_slow_receiver_on_another_port_delays_no_one(
    start_service: ServiceFactory, receiver: Receiver
) -> None:
    fast = Receiver()
    await fast.start()
    client = await start_service(
        webhook_secret=SECRET,
        webhook_allow_hosts=LOOPBACK,
        max_queued=20,
        max_active_per_user=20,
    )
    receiver.gate = asyncio.Event()  # the slow receiver holds every answer
    try:
        assert fast.url.split(":")[2] != receiver.url.split(":")[2]  # same host, two ports
        for n in range(10):
            await _cancelled_hook(client, receiver.url, 100 + n)
        await wait_until(lambda: receiver.in_flight["cancelled"] == 2, 30, "two held")
        quick = await _cancelled_hook(client, fast.url, 1)
        await fast.wait_for(lambda ds: len(ds) == 1, 10)
        assert fast.deliveries[0].body["job_id"] == quick
        # The slow one still holds its two requests, and never more than two at once.
        assert receiver.in_flight["cancelled"] == 2 and not receiver.deliveries
        receiver.gate.set()
        await receiver.wait_for(lambda ds: len(ds) == 10, 60)
        assert receiver.most_in_flight["cancelled"] == 2
    finally:
        receiver.gate.set()
        await client.service.stop()
        await fast.close()
