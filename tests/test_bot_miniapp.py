"""The page as a Mini App from the chat (issue 24, item 3): with an https PUBLIC_URL the bot
sets its menu button to open the page inside Telegram and answers /app with a button that opens
it; without one, no menu button, and /app says so in the user's language."""

from __future__ import annotations

from .bot_stack import ALICE, BORIS, Stack
from .fake_telegram import FakeTelegram


async def test_the_menu_button_and_app_open_the_page(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start(public_url="https://motion.example.com")
    await tg.wait_for(lambda: tg.menu_buttons, what="setChatMenuButton")
    button = tg.menu_buttons[-1]
    assert button["type"] == "web_app"
    assert button["web_app"]["url"] == "https://motion.example.com/"
    await tg.send_text(ALICE, "/app")
    message = await tg.wait_message(ALICE.id, "inside Telegram")
    [[key]] = message["reply_markup"]["inline_keyboard"]
    assert key["web_app"]["url"] == "https://motion.example.com/" and key["text"] == "Open the app"
    await tg.send_text(BORIS, "/app")
    message = await tg.wait_message(BORIS.id, "прямо в Telegram")
    assert message["reply_markup"]["inline_keyboard"][0][0]["text"] == "Открыть приложение"


async def test_without_https_there_is_no_menu_button(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start(public_url="http://127.0.0.1:8000")
    await tg.send_text(ALICE, "/app")
    await tg.wait_message(ALICE.id, "not available")
    assert tg.menu_buttons == [] and not tg.calls_of("setChatMenuButton")
