"""Stories through the HTTP API: the multipart and JSON forms, their caps and refusals, and
the status and result views, against the real service."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema

from fanslymotion import music, video

from .conftest import Client, ServiceFactory, assert_error_body
from .storytools import photo_jpeg, tune, write_wav

STORY: dict[str, Any] = {
    "shots": [
        {"duration": 2, "motion_preset": "pan_r", "caption": "Astronaut"},
        {"duration": 3, "motion_preset": "dolly_in", "caption": "Кофе", "transition": "fade"},
        {"duration": 2},
    ],
    "transition": {"kind": "crossfade", "seconds": 0.5},
    "look": "vivid",
    "watermark": {"text": "@story", "corner": "bottom_left"},
}
PHOTOS = ("astronaut", "coffee", "chelsea")


def _conforms(document: dict[str, Any], schema_name: str, body: Any) -> None:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)


def _form(story: dict[str, Any], photos: list[bytes], audio: bytes | None) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("user_id", "5")
    form.add_field("resolution", "360p")
    form.add_field("story", json.dumps(story))
    for i, data in enumerate(photos):
        form.add_field("image", data, filename=f"{i}.jpg", content_type="image/jpeg")
    if audio is not None:
        form.add_field("audio", audio, filename="tune.wav", content_type="audio/wav")
    return form


async def test_a_multipart_story_with_music(client: Client, tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "t.wav", tune(10.0, level=0.05)).read_bytes()
    photos = [photo_jpeg(name) for name in PHOTOS]
    status, created, _ = await client.request(
        "POST", "/job/create", data=_form(STORY, photos, audio)
    )
    assert status == 201, created
    final = await client.wait(created["job_id"])
    assert final["status"] == "completed", final
    _, document, _ = await client.request("GET", "/openapi.json")
    _conforms(document, "JobStatusOut", final)
    story = final["story"]
    assert [s["caption"] for s in story["shots"]] == ["Astronaut", "Кофе", ""]
    assert [s["transition"] for s in story["shots"]] == ["crossfade", "fade", ""]
    assert story["music"] is True and story["watermark"] == "@story"
    fps = final["fps"]
    # 2 + 3 + 2 s; a crossfade of 0.5 s (2 frames at 4 fps), a fade of 3 (odd: a black middle).
    assert story["frames"] == (2 + 3 + 2) * fps - 2 - 3
    assert story["seconds"] == story["frames"] / fps
    status, result, _ = await client.request("GET", f"/job/result/{created['job_id']}")
    assert status == 200
    _conforms(document, "JobResultOut", result)
    assert result["frames"] == story["frames"] and result["story"] == story
    assert result["duration"] == story["seconds"]
    status, data, _ = await client.request("GET", result["video_url"])
    out = tmp_path / "story.mp4"
    out.write_bytes(data)
    assert video.probe(out).frames == story["frames"]
    assert abs(music.audio_seconds(out) - story["seconds"]) <= 1 / fps


async def test_a_json_story(client: Client) -> None:
    body = json.loads(json.dumps(STORY))
    for shot, name in zip(body["shots"], PHOTOS, strict=True):
        shot["image_data"] = base64.b64encode(photo_jpeg(name)).decode()
    payload = {"user_id": 6, "resolution": "360p", "aspect": "16:9", "story": body}
    status, created, _ = await client.request("POST", "/job/create", json=payload)
    assert status == 201, created
    final = await client.wait(created["job_id"])
    assert final["status"] == "completed", final
    assert final["story"]["music"] is False and len(final["story"]["shots"]) == 3
    assert (final["story"]["frames"], final["fps"]) == (7 * 4 - 5, 4)


async def test_refusals_name_the_shot_field_and_limit(
    start_service: ServiceFactory, tmp_path: Path
) -> None:
    client = await start_service(max_story_mb=0.25)
    photos = [photo_jpeg(name) for name in PHOTOS]
    cases: list[tuple[dict[str, Any], list[bytes], bytes | None, int, str]] = [
        (
            {**STORY, "shots": [*STORY["shots"][:2], {"duration": 40}]},
            photos,
            None,
            422,
            "shots[2].duration",
        ),
        ({**STORY, "look": "sepia"}, photos, None, 422, "story.look"),
        (STORY, photos[:2], None, 422, "3 shots but 2 photos"),
        (STORY, [photos[0], b"not a photo", photos[2]], None, 415, "shots[1].image"),
        (STORY, photos, b"RIFF junk", 400, "MP3, AAC/M4A, WAV, OGG/Opus or FLAC"),
    ]
    silent = write_wav(tmp_path / "s.wav", tune(2.0, rate=8000, level=0.0), rate=8000).read_bytes()
    cases.append((STORY, photos, silent, 422, "silent"))
    for story, images, audio, code, words in cases:
        status, body, _ = await client.request(
            "POST", "/job/create", data=_form(story, images, audio)
        )
        assert status == code, (words, body)
        assert_error_body(body, code)
        assert words in body["error"], (words, body)
    big = photos + [photo_jpeg("rocket")] * 3
    story = {**STORY, "shots": [{"duration": 2}] * len(big)}
    status, body, _ = await client.request("POST", "/job/create", data=_form(story, big, None))
    assert status == 413 and "MAX_STORY_MB (0.25 MB)" in body["error"], body
    assert_error_body(body, 413)
    status, jobs, _ = await client.request("GET", "/jobs")
    assert status == 200 and jobs["jobs"] == []
