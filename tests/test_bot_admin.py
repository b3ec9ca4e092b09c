"""The operator in the chat and the owners' rules in the bot (issue 26), through the real
Dispatcher polling the fake Bot API: /stats, /queue, /pause, /resume for ADMINS only; a blocked
owner and a daily limit refused politely in the user's language, with the reset time; a
Telegram owner named in /admin/users by the name their updates carry."""

from __future__ import annotations

from dataclasses import replace

from fanslymotion.store import OwnerRule

from .bot_stack import ALICE, BORIS, Stack, _text, choose, open_menu, wait_video
from .bot_stack import TOKEN as BOT
from .conftest import ServiceFactory, photo_bytes
from .fake_telegram import FakeTelegram, FakeUser

ADMIN_TOKEN = "bot-admin-s3cret-for-tests"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_operator_commands_for_admins_only(stack: Stack, tg: FakeTelegram) -> None:
    root = FakeUser(99, "Root", "en")
    korney = FakeUser(98, "Корней", "ru")
    await stack.start(admins=[root.id, korney.id])
    await tg.send_text(ALICE, "/stats")  # not an admin: the unknown command's reply
    await tg.wait_message(ALICE.id, "I did not get that")
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes())
    await wait_video(tg, ALICE)

    await tg.send_text(root, "/stats")
    stats = _text(await tg.wait_message(root.id, "Today (UTC)"))
    assert "1 jobs · 1 done · 0 failed (failure rate 0%)" in stats
    assert "Queue: 0 waiting · 0 running · processing running" in stats
    assert "Median render time: 360p " in stats
    await tg.send_text(korney, "/stats")
    russian = _text(await tg.wait_message(korney.id, "Сегодня (UTC)"))
    assert "заданий 1 · готово 1 · ошибок 0" in russian

    await tg.send_text(root, "/pause")
    await tg.wait_message(root.id, "Processing paused")
    assert await stack.store.get_flag("paused") == "1"  # the flag /admin/pause sets too
    await tg.send_text(root, "/stats")
    await tg.wait_message(root.id, "processing paused")
    await tg.send_text(root, "/resume")
    await tg.wait_message(root.id, "Processing resumed")
    assert await stack.store.get_flag("paused") == "0"


async def test_a_blocked_owner_is_told_politely(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start()
    await stack.store.set_owner_rule("telegram", ALICE.id, OwnerRule(blocked=True))
    await stack.store.set_owner_rule("telegram", BORIS.id, OwnerRule(blocked=True))
    # The same number as an API caller is another owner: not blocked.
    assert not (await stack.store.owner_rule("api", ALICE.id)).blocked
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes())
    await tg.wait_message(ALICE.id, "this account cannot order videos")
    await choose(tg, BORIS)
    await tg.send_photo(BORIS, photo_bytes())
    await tg.wait_message(BORIS.id, "с этого аккаунта сейчас нельзя заказывать видео")
    assert await stack.store.count_jobs() == 0
    await stack.store.set_owner_rule("telegram", ALICE.id, OwnerRule(blocked=False))
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes())
    await wait_video(tg, ALICE)


async def test_the_daily_limit_in_the_users_language(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start(daily_seconds_per_user=5)
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes())
    await wait_video(tg, ALICE)
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes())
    refusal = _text(await tg.wait_message(ALICE.id, "daily limit of 5 s"))
    assert "(3 s ordered today)" in refusal and "resets at 00:00 UTC" in refusal
    await stack.store.set_owner_rule("telegram", BORIS.id, OwnerRule(daily_seconds=2))
    await choose(tg, BORIS)
    await tg.send_photo(BORIS, photo_bytes())
    russian = _text(await tg.wait_message(BORIS.id, "дневной лимит в 2 с"))
    assert "сегодня заказано 0 с" in russian and "00:00 UTC" in russian
    assert await stack.store.count_jobs() == 1


async def test_telegram_owners_by_name(start_deployed: ServiceFactory, tg: FakeTelegram) -> None:
    """The name a user's updates carry reaches /admin/users (both deployments), and follows
    a change of name; an API caller with the same number stays nameless."""
    client = await start_deployed(admin_token=ADMIN_TOKEN, bot_token=BOT, telegram_api=tg.url)
    alice = FakeUser(7001, "Alice", "en")
    await open_menu(tg, alice)
    status, body, _ = await client.request(
        "PUT", "/admin/users/telegram:7001", json={"daily_seconds": 30}, headers=ADMIN
    )
    assert status == 200 and (body["name"], body["username"]) == ("Alice", None)
    await open_menu(tg, replace(alice, first_name="Alicia", last_name="Liddell", username="al"))
    await client.request("PUT", "/admin/users/api:7001", json={"blocked": True}, headers=ADMIN)
    status, body, _ = await client.request("GET", "/admin/users", headers=ADMIN)
    named = {u["owner"]["id"]: (u["name"], u["username"]) for u in body["users"]}
    assert named == {"telegram:7001": ("Alicia Liddell", "al"), "api:7001": (None, None)}
