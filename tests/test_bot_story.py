"""Stories in the bot, through the real Dispatcher polling the fake Bot API: an album becomes
one story with the album's captions; music sent during the settings plays under the video."""

from __future__ import annotations

import json
from pathlib import Path

from fanslymotion import music, video

from .bot_stack import ALICE, Stack, _text, choose, progress_message, wait_button, wait_video
from .fake_telegram import FakeTelegram
from .storytools import photo_jpeg, transcode, tune, write_wav


async def test_an_album_becomes_one_story_with_its_captions(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start()
    await choose(tg, ALICE, duration=3, motion="dolly_in")
    await tg.send_text(ALICE, "/story")  # the transition and the look, one set for all shots
    for data in ("story:transition:fade", "story:look:mono"):
        picker = await wait_button(tg, ALICE.id, data)
        await tg.press(ALICE, picker, data)
        shown = picker["message_id"]

        def marked(d: str = data, shown: int = shown) -> bool:
            buttons = tg.buttons(tg.message(ALICE.id, shown))
            return any(text.startswith("• ") and got == d for text, got in buttons)

        await tg.wait_for(marked, 10, f"{data} marked")
    captions = ["Astronaut", "Кофе утром", None]
    for name, caption in zip(("astronaut", "coffee", "chelsea"), captions, strict=True):
        await tg.send_photo(ALICE, photo_jpeg(name), caption, media_group_id="trip")
    accepted = await progress_message(tg, ALICE)
    assert "album of 3 photos" in _text(accepted)
    call = await wait_video(tg, ALICE, within=60)
    assert "Story: 3 photos" in str(call.get("caption"))
    jobs = await stack.store.list_jobs(user_id=ALICE.id, limit=10)
    assert len(jobs) == 1 and jobs[0].story is not None
    story = json.loads(jobs[0].story)
    assert [s["caption"] for s in story["shots"]] == ["Astronaut", "Кофе утром", ""]
    assert [s["motion"] for s in story["shots"]] == ["dolly_in"] * 3
    assert [t["kind"] for t in story["transitions"]] == ["fade", "fade"]
    assert story["look"] == "mono"
    assert story["music"] is False
    sent = Path(stack.settings.data_dir) / "sent.mp4"
    sent.write_bytes(next(iter(call.files.values())))
    assert video.probe(sent).frames == story["frames"]


async def test_music_during_the_settings_plays_under_the_video(
    stack: Stack, tg: FakeTelegram, tmp_path: Path
) -> None:
    await stack.start()
    wav = write_wav(tmp_path / "t.wav", tune(8.0, level=0.1))
    ogg = transcode(wav, tmp_path / "t.ogg", "-c:a", "libopus", "-b:a", "48k")
    await choose(tg, ALICE, duration=3)
    await tg.send_audio(ALICE, ogg.read_bytes())
    await tg.wait_message(ALICE.id, "Music kept")
    await tg.send_photo(ALICE, photo_jpeg("rocket"))
    accepted = await progress_message(tg, ALICE)
    assert "With your music" in _text(accepted)
    call = await wait_video(tg, ALICE, within=60)
    assert "music" in str(call.get("caption"))
    sent = tmp_path / "sent.mp4"
    sent.write_bytes(next(iter(call.files.values())))
    info = video.probe(sent)
    assert abs(music.audio_seconds(sent) - info.frames / info.fps) <= 1 / info.fps
    assert abs(music.integrated_loudness(sent) + 14.0) <= 1.0

    # silence is refused in words, and /nomusic goes back to a silent video
    silent = write_wav(tmp_path / "s.wav", tune(4.0, level=0.0))
    await choose(tg, ALICE, duration=3)
    await tg.send_audio(ALICE, silent.read_bytes(), voice=True)
    await tg.wait_message(ALICE.id, "Music kept")
    await tg.send_photo(ALICE, photo_jpeg("coffee"))
    await tg.wait_message(ALICE.id, "it is silent")
    await tg.send_text(ALICE, "/nomusic")
    await tg.wait_message(ALICE.id, "No music this time")
