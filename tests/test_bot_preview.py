"""The live preview in the progress message (SVD publishes one after each pass): the message
becomes the animation with the progress as its caption, within the chat's edit budget, and
stays text where Telegram refuses the media. The last test renders with the tiny random-weight
SVD pipeline on the CPU, so the previews are the queue's own events."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from fanslymotion import video

from .bot_stack import ALICE, Stack, _text, choose, job_id_of, progress_message, wait_video
from .conftest import photo_bytes
from .fake_telegram import ApiCall, FakeTelegram

# Serial: the edit budget is read from the spacing of the fake's arrival times.
pytestmark = pytest.mark.serial

EDITS = ("editMessageText", "editMessageMedia", "editMessageCaption")


def small_mp4(path: Path) -> Path:
    frames = (np.full((64, 96, 3), 40 * i, dtype=np.uint8) for i in range(6))
    video.encode(frames, path, width=96, height=64, fps=6)
    return path


def edits_of(tg: FakeTelegram, message_id: int) -> list[ApiCall]:
    return [
        c
        for c in tg.calls
        if c.method in EDITS
        and int(c.get("chat_id")) == ALICE.id
        and int(c.get("message_id")) == message_id
    ]


async def test_the_preview_replaces_the_text_within_the_budget(
    stack: Stack, tg: FakeTelegram, tmp_path: Path
) -> None:
    bot = await stack.start(fps=12)
    preview = small_mp4(tmp_path / "preview.mp4")
    await choose(tg, ALICE, duration=10, resolution="720p")
    await tg.send_photo(ALICE, photo_bytes(640, 480))
    accepted = await progress_message(tg, ALICE)
    message_id = accepted["message_id"]
    await tg.wait_for(lambda: "%" in _text(tg.message(ALICE.id, message_id)), 15, "a bar")
    bot.progress.show_preview(job_id_of(tg, accepted), preview)
    shown = await tg.wait_for(
        lambda: "animation" in tg.message(ALICE.id, message_id), 10, "the preview shown"
    )
    assert shown
    assert "%" in str(tg.message(ALICE.id, message_id).get("caption"))
    await wait_video(tg, ALICE, within=60)
    await tg.wait_for(
        lambda: "Here comes the video" in str(tg.message(ALICE.id, message_id).get("caption")),
        10,
        "ready, as the caption",
    )
    edits = edits_of(tg, message_id)
    assert [c.method for c in edits].count("editMessageMedia") == 1
    after = edits[[c.method for c in edits].index("editMessageMedia") + 1 :]
    assert after and all(c.method == "editMessageCaption" and c.ok for c in after)
    for before, later in itertools.pairwise(edits):  # one budget for all three kinds
        assert later.at - before.at >= 0.3 * 0.9


async def test_a_refused_preview_leaves_the_text(
    stack: Stack, tg: FakeTelegram, tmp_path: Path
) -> None:
    bot = await stack.start(fps=12)
    tg.refuse_media = True
    await choose(tg, ALICE, duration=10, resolution="720p")
    await tg.send_photo(ALICE, photo_bytes(640, 480))
    accepted = await progress_message(tg, ALICE)
    message_id = accepted["message_id"]
    await tg.wait_for(lambda: "%" in _text(tg.message(ALICE.id, message_id)), 15, "a bar")
    job_id = job_id_of(tg, accepted)
    bot.progress.show_preview(job_id, small_mp4(tmp_path / "preview.mp4"))
    refused = await tg.wait_call("editMessageMedia", ok=False)
    assert refused.description == "Bad Request: MEDIA_EMPTY"
    bot.progress.show_preview(job_id, tmp_path / "preview.mp4")  # not tried again
    await wait_video(tg, ALICE, within=60)
    await tg.wait_for(
        lambda: "Here comes the video" in _text(tg.message(ALICE.id, message_id)), 10, "ready"
    )
    assert len(tg.calls_of("editMessageMedia")) == 1


# diffusers' scheduler calls np.array() on a torch tensor (see tests/test_svd.py).
@pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
async def test_svd_previews_reach_the_progress_message(
    stack: Stack, tg: FakeTelegram, tiny_svd: Path
) -> None:
    await stack.start(
        renderer="svd", svd_model=str(tiny_svd), svd_device="cpu", svd_size=128, fps=4, svd_steps=2
    )
    await choose(tg, ALICE, duration=3)
    await tg.send_photo(ALICE, photo_bytes(320, 240))
    accepted = await progress_message(tg, ALICE)
    message_id = accepted["message_id"]
    await wait_video(tg, ALICE, within=120)
    await tg.wait_for(
        lambda: "Here comes the video" in str(tg.message(ALICE.id, message_id).get("caption")),
        10,
        "ready, as the preview's caption",
    )
    shown = [c for c in tg.calls_of("editMessageMedia") if c.ok]
    assert shown
    for call in shown:  # the preview MP4s themselves, the progress as their caption
        media = call.get("media")
        data = call.files[str(media["media"]).removeprefix("attach://")]
        assert data[4:8] == b"ftyp" and "%" in media["caption"]
    edits = edits_of(tg, message_id)
    for before, later in itertools.pairwise(edits):
        assert later.at - before.at >= 0.3 * 0.9
