"""A request becoming a job's row: the photo decoded once so bad input fails at create, the
shot aimed at it, and the row with the service's defaults filled in. Called by the job service
(the photo work in an executor)."""

from __future__ import annotations

import json
import secrets

from . import camera, photo, webhook
from .camera import Shot
from .config import Settings
from .errors import PayloadTooLarge
from .models import JobRequest
from .store import NewJob


def check_photo(
    settings: Settings, renderer: str, image: bytes, request: JobRequest
) -> tuple[str, Shot, int]:
    """Decode the upload once (in an executor) so bad input fails now, not in the queue,
    and aim the shot at it (keyframes checked, the subject found, warnings)."""
    if len(image) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"the photo is larger than {settings.max_upload_mb:g} MB")
    img = photo.load_photo(image, max_pixels=settings.max_pixels, min_side=settings.min_side)
    try:
        shot = camera.prepare(
            img,
            request.shot,
            preset=request.motion_preset,
            strength=request.strength,
            resolution=request.resolution,
            aspect=request.aspect,
            renderer=renderer,
        )
        pixels = img.width * img.height
    finally:
        img.close()
    return ".img", shot, pixels


def new_row(
    settings: Settings,
    request: JobRequest,
    job_id: str,
    input_path: str,
    idempotency_key: str | None,
    request_digest: str | None,
    shot: Shot,
) -> NewJob:
    """The row of a validated request: a seed drawn and the service's steps and fps filled
    in where the request leaves them open."""
    hook_url, hook_events = webhook.check_subscription(
        settings, request.webhook_url, list(request.webhook_events)
    )
    return NewJob(
        job_id=job_id,
        user_id=request.user_id,
        source=request.source,
        chat_id=request.chat_id,
        message_id=request.message_id,
        language=request.language,
        duration=request.duration,
        resolution=request.resolution,
        motion_preset=request.motion_preset,
        aspect=request.aspect,
        strength=request.strength,
        seed=request.seed if request.seed is not None else secrets.randbelow(2**31),
        steps=request.steps if request.steps is not None else settings.svd_steps,
        fps=request.fps or settings.fps,
        input_path=input_path,
        idempotency_key=idempotency_key,
        request_digest=request_digest,
        webhook_url=hook_url,
        webhook_events=json.dumps(hook_events) if hook_url else None,
        shot=shot.to_json(),
    )
