"""What the service shows to strangers (issue 24, item 9): with API_TOKEN set, /health says
only `ok` and `reason` without it, and /metrics needs it or METRICS_TOKEN (for scrapers)."""

from __future__ import annotations

from .conftest import ServiceFactory

ADMIN = "admin-token-0123456789"
SCRAPER = "scraper-token-0123456"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_health_and_metrics_for_strangers(start_service: ServiceFactory) -> None:
    client = await start_service(api_token=ADMIN, metrics_token=SCRAPER)
    status, body, _ = await client.request("GET", "/health")
    assert status == 200 and body == {"ok": True, "reason": None}
    for token in (SCRAPER, "wrong-token-0123456789"):  # the scraper's token opens /metrics only
        status, body, _ = await client.request("GET", "/health", headers=_bearer(token))
        assert set(body) == {"ok", "reason"}
    status, body, _ = await client.request("GET", "/health", headers=_bearer(ADMIN))
    assert status == 200 and "renderer" in body and "queue_length" in body
    await client.service.jobs.pause()
    status, body, _ = await client.request("GET", "/health")
    assert status == 503 and body["ok"] is False and "paused" in body["reason"]
    assert set(body) == {"ok", "reason"}
    status, body, response = await client.request("GET", "/metrics")
    assert status == 401 and body["ok"] is False
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = await client.request("GET", "/metrics", headers=_bearer("nope-0123456789abc"))
    assert status == 401
    for token in (ADMIN, SCRAPER):
        status, text, _ = await client.request("GET", "/metrics", headers=_bearer(token))
        assert status == 200 and b"fanslymotion_" in text


async def test_without_tokens_both_stay_open(start_service: ServiceFactory) -> None:
    client = await start_service()
    status, body, _ = await client.request("GET", "/health")
    assert status == 200 and "renderer" in body
    status, text, _ = await client.request("GET", "/metrics")
    assert status == 200 and b"fanslymotion_" in text


async def test_a_scraper_token_alone_guards_metrics_only(start_service: ServiceFactory) -> None:
    client = await start_service(metrics_token=SCRAPER)
    assert (await client.request("GET", "/metrics"))[0] == 401
    assert (await client.request("GET", "/metrics", headers=_bearer(SCRAPER)))[0] == 200
    status, body, _ = await client.request("GET", "/health")
    assert status == 200 and "renderer" in body
