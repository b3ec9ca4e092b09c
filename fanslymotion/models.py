"""The pydantic models of the HTTP API, which validate requests and are the source of
/openapi.json, and the request a client makes (`JobRequest`). The job vocabulary (statuses,
phases, progress) lives in vocabulary.py; it is imported here for the API's models and for
modules that import it from here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import motion
from .camera import MAX_KEYFRAMES, MAX_ZOOM, MIN_KEYFRAMES, Shot, make_shot
from .errors import InvalidParams
from .motion import Aspect, Duration, Preset, Resolution
from .story import MAX_STORY_SECONDS, Story
from .subject import Framing
from .vocabulary import ACTIVE, TERMINAL, JobStatus, Phase, Progress, WebhookEvent

# The frame rates a job may ask for; without one it gets the service's FPS.
FPS_CHOICES = (24, 30)
JobFps = Literal[24, 30]

__all__ = ["ACTIVE", "TERMINAL", "JobStatus", "Phase", "Progress", "WebhookEvent"]


# pending: no video yet; ready: it can be downloaded; deleted: pruned after its retention
# period (the job stays completed); none: the job failed or was cancelled.
VideoState = Literal["pending", "ready", "deleted", "none"]
_VIDEO = "whether the job's video exists: pending, ready, deleted (pruned) or none"
_VIDEO_URL = (
    "where to download the MP4 while `video` is ready; with API_TOKEN set it is a signed link"
    " (expires, sig) that opens without the bearer header until it expires"
)
_POSTER_URL = "the video's first frame as JPEG, signed like video_url"


@dataclass(frozen=True)
class JobRequest:
    """What a client asks for. `validate` enforces the product's ranges for API and bot alike."""

    user_id: int
    duration: int
    resolution: str
    motion_preset: str
    aspect: str = "auto"
    strength: float = 0.5
    seed: int | None = None
    steps: int | None = None
    source: Literal["api", "telegram"] = "api"
    chat_id: int | None = None
    message_id: int | None = None
    language: str | None = None
    webhook_url: str | None = None
    webhook_events: tuple[str, ...] = ()
    fps: int | None = None
    shot: Shot = field(default_factory=Shot)
    """focus, keyframed camera and loop (camera.make_shot checks them)."""
    story: Story | None = None
    """A story of several shots (story.parse_story checked it); None: one photo."""

    def validate(self) -> None:
        if self.story is not None:
            if not 1 <= self.duration <= MAX_STORY_SECONDS:
                raise InvalidParams(f"a story lasts at most {MAX_STORY_SECONDS:g} s")
        elif self.duration not in motion.DURATIONS:
            raise InvalidParams(f"duration must be one of {', '.join(map(str, motion.DURATIONS))}")
        if self.resolution not in motion.RESOLUTIONS:
            raise InvalidParams(f"resolution must be one of {', '.join(motion.RESOLUTIONS)}")
        if self.motion_preset not in motion.PRESETS:
            raise InvalidParams(f"motion_preset must be one of {', '.join(motion.PRESETS)}")
        if self.aspect not in motion.ASPECTS:
            raise InvalidParams(f"aspect must be one of {', '.join(motion.ASPECTS)}")
        if not 0.0 <= self.strength <= 1.0:
            raise InvalidParams("strength must be between 0 and 1")
        if self.seed is not None and not 0 <= self.seed < 2**32:
            raise InvalidParams("seed must be between 0 and 4294967295")
        if self.steps is not None and not 1 <= self.steps <= 100:
            raise InvalidParams("steps must be between 1 and 100")
        if self.fps is not None and self.fps not in FPS_CHOICES:
            raise InvalidParams(f"fps must be one of {', '.join(map(str, FPS_CHOICES))}")


class Focus(BaseModel):
    """A point of the photo, in fractions of its width and height from the top left."""

    model_config = ConfigDict(extra="forbid")

    x: float = Field(ge=0.0, le=1.0)
    y: float = Field(ge=0.0, le=1.0)


class KeyframeIn(BaseModel):
    """The camera's window at time t: its centre (photo fractions) and zoom (1 = the largest
    window of the output's aspect that fits the photo)."""

    model_config = ConfigDict(extra="forbid")

    t: float = Field(ge=0.0, le=1.0, description="time in the clip, 0 (start) to 1 (end)")
    x: float = Field(ge=0.0, le=1.0, description="window centre, fraction of the photo's width")
    y: float = Field(ge=0.0, le=1.0, description="window centre, fraction of the photo's height")
    zoom: float = Field(1.0, ge=1.0, le=MAX_ZOOM, description="1 = widest; 2 = half as wide")


class CameraIn(BaseModel):
    """A camera you aim: 2-8 keyframes in time order; the path glides through them."""

    model_config = ConfigDict(extra="forbid")

    keyframes: list[KeyframeIn] = Field(min_length=MIN_KEYFRAMES, max_length=MAX_KEYFRAMES)
    ease: Literal["smooth", "linear"] = Field(
        "smooth", description="smooth: eased in and out at each keyframe; linear: steady"
    )


class ShotWarning(BaseModel):
    """Something the client should know before (or after) rendering."""

    model_config = ConfigDict(extra="allow")

    code: Literal["upscale", "svd_no_loop"] = Field(
        description="upscale: the tightest window enlarges the photo more than 1.5x;"
        " svd_no_loop: the SVD renderer's frames do not loop"
    )
    message: str
    factor: float | None = Field(None, description="upscale: how much the photo is enlarged")
    max_resolution: Resolution | None = Field(
        None, description="upscale: the largest resolution that needs no enlarging (null: none)"
    )


class JobParams(BaseModel):
    """Parameters of a job, shared by the JSON and the multipart forms of /job/create."""

    model_config = ConfigDict(extra="forbid")

    user_id: int = Field(
        ge=0, le=2**53, description="The client's user id (Telegram id for the bot)"
    )
    duration: Duration = Field(description="Seconds of video")
    resolution: Resolution = Field(description="Short side of the video")
    motion_preset: Preset = Field(description="Camera motion")
    aspect: Aspect = "auto"
    strength: float = Field(0.5, ge=0.0, le=1.0, description="Amplitude of the motion")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Drawn when not given")
    steps: int | None = Field(None, ge=1, le=100, description="Denoising steps (SVD renderer)")
    webhook_url: str | None = Field(
        None,
        max_length=2000,
        description="http(s) URL that receives this job's events, signed per Standard Webhooks",
    )
    webhook_events: list[WebhookEvent] | None = Field(
        None, description="events to send (default: completed, failed, cancelled)"
    )
    fps: JobFps | None = Field(None, description="frames per second; default: the service's FPS")
    focus: Focus | None = Field(
        None, description="where the subject is (overrides face and saliency detection)"
    )
    camera: CameraIn | None = Field(
        None, description="aim the camera yourself (replaces motion_preset's path)"
    )
    loop: bool = Field(False, description="return to the start so the clip loops seamlessly")

    def shot(self) -> Shot:
        return make_shot(
            focus=None if self.focus is None else self.focus.model_dump(),
            camera=None if self.camera is None else self.camera.model_dump(),
            loop=self.loop,
        )


class JobCreateJSON(JobParams):
    image_data: str = Field(
        description="The photo, base64-encoded (an empty one is 400 photo_empty, as in a form)"
    )


# -- stories (issue 25) --


TransitionName = Literal["cut", "crossfade", "fade", "slide"]


class StoryTransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: TransitionName
    seconds: float = Field(0.6, ge=0.3, le=1.5, description="overlap with the next shot")


class StoryShotIn(BaseModel):
    """One shot of a story: its photo (shot i: the i-th `image` part, or `image_data`), length,
    camera and caption, and the transition to the next shot."""

    model_config = ConfigDict(extra="forbid")

    image_data: str | None = Field(None, description="JSON form: the shot's photo in base64")
    duration: int = Field(4, ge=2, le=12, description="seconds of this shot")
    motion_preset: Preset = "micro"
    strength: float = Field(0.5, ge=0.0, le=1.0)
    focus: Focus | None = None
    camera: CameraIn | None = None
    caption: str | None = Field(None, max_length=120, description="Latin, Cyrillic...")
    transition: StoryTransitionIn | TransitionName | None = Field(
        None, description="into the next shot (default: the story's transition)"
    )


class WatermarkIn(BaseModel):
    """A short text, or the `logo` part / `logo_data` (a small PNG), in a corner."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, max_length=40)
    corner: Literal["top_left", "top_right", "bottom_left", "bottom_right"] = "bottom_right"
    opacity: float = Field(0.7, ge=0.1, le=1.0)


class StoryIn(BaseModel):
    """1-10 shots, at most 60 s in all; the multipart form sends it as the `story` field
    (JSON text) beside repeated `image` parts and an optional `audio` part."""

    model_config = ConfigDict(extra="forbid")

    shots: list[StoryShotIn] = Field(min_length=1, max_length=10)
    transition: StoryTransitionIn | TransitionName | None = None
    look: Literal["natural", "warm", "cool", "vivid", "mono", "film"] = "natural"
    watermark: WatermarkIn | None = None
    music_start: float = Field(0.0, ge=0.0, le=600.0, description="seconds into the audio")


class StoryCreateJSON(BaseModel):
    """The JSON form of a story job: the job's fields (no duration or motion_preset: the shots
    have theirs), `story`, and optionally `audio_data` and `logo_data` in base64."""

    model_config = ConfigDict(extra="allow")

    user_id: int = Field(ge=0, le=2**53)
    resolution: Resolution
    story: StoryIn
    audio_data: str | None = Field(
        None, description="MP3, AAC/M4A, WAV, OGG/Opus or FLAC, at most 20 MB and 10 minutes"
    )
    logo_data: str | None = Field(None, description="the watermark's PNG logo")


class StoryShotOut(BaseModel):
    duration: float
    motion_preset: str
    caption: str
    transition: str = Field(description="into the next shot ('' for the last shot)")
    transition_seconds: float


class StoryOut(BaseModel):
    """A story job's shots and what was used; `seconds` is the whole video's exact length."""

    shots: list[StoryShotOut]
    look: str
    watermark: str | None = Field(description="its text, 'logo', or null")
    music: bool
    music_start: float
    seconds: float | None = None
    frames: int | None = None


def story_out(value: Any) -> Any:
    """The row's `story` JSON text as the API shows it (a model or dict passes unchanged)."""
    if value is None or not isinstance(value, str):
        return value
    data = json.loads(value)
    steps = data["transitions"]
    shots = []
    for i, shot in enumerate(data["shots"]):
        after = steps[i] if i < len(steps) else {"kind": "", "seconds": 0.0}
        shots.append(
            {
                "duration": shot["seconds"],
                "motion_preset": shot["motion"],
                "caption": shot["caption"],
                "transition": after["kind"],
                "transition_seconds": after["seconds"],
            }
        )
    mark = data.get("watermark")
    return {
        "shots": shots,
        "look": data["look"],
        "watermark": None if mark is None else (mark["text"] or "logo"),
        "music": bool(data.get("music")),
        "music_start": data["music_start"],
        "seconds": data.get("seconds"),
        "frames": data.get("frames"),
    }


class JobCreated(BaseModel):
    job_id: str
    status: JobStatus
    queue_position: int | None
    eta_seconds: float | None = Field(description="Seconds until the video is ready")
    estimated_time: float | None = Field(
        description="The old name of eta_seconds, kept for one release", deprecated=True
    )
    fps: int
    framing: Framing | None = Field(
        None, description="how the path is aimed: face, saliency, centre, focus or camera"
    )
    warnings: list[ShotWarning] = Field(default_factory=list)


class WebhookState(BaseModel):
    """Delivery of a job's webhook events so far."""

    delivered: int = Field(description="events the receiver accepted")
    pending: int = Field(description="events waiting for (another) attempt")
    failed: int = Field(description="events given up")
    attempts: int
    last_error: str | None


class JobStatusOut(BaseModel):
    """A job's state. Built from the job's row (`from_attributes`); the queue adds the
    position and ETA, the live render its progress."""

    model_config = ConfigDict(from_attributes=True)

    job_id: str
    status: JobStatus
    progress: float = Field(ge=0, le=100)
    message: str = Field(description="the phase in plain English, e.g. 'animating 2/4'")
    phase: Phase | Literal["", "done"] = Field(
        "", description="the phase's name ('' when none; 'done' once completed)"
    )
    phase_step: int = Field(0, description="the pass the phase is at (0 when it has none)")
    phase_steps: int = Field(0, description="passes in all (0 when the phase has none)")
    queue_position: int | None = None
    eta_seconds: float | None = None
    created_at: str
    started_at: str | None
    completed_at: str | None
    attempts: int
    error: str | None
    renderer: str | None
    video: VideoState = Field("pending", description=_VIDEO)
    video_url: str | None = Field(None, description=_VIDEO_URL)
    poster_url: str | None = Field(None, description=_POSTER_URL)
    webhook: WebhookState | None = None
    fps: int
    framing: Framing | None = Field(
        None, description="how the path is aimed: face, saliency, centre, focus or camera"
    )
    warnings: list[ShotWarning] = Field(default_factory=list)
    story: StoryOut | None = Field(None, description="a story job's shots (null: one photo)")

    _story = field_validator("story", mode="before")(story_out)


class JobParameters(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    duration: int
    resolution: str
    motion_preset: str
    aspect: str
    strength: float
    steps: int
    fps: int
    loop: bool = False
    focus: Focus | None = None
    camera: CameraIn | None = None


class JobResultOut(BaseModel):
    job_id: str
    status: JobStatus
    parameters: JobParameters
    seed: int
    frames: int | None
    fps: int
    width: int | None
    height: int | None
    duration: float | None
    size: int | None
    renderer: str | None
    render_seconds: float | None
    video: VideoState = Field(description=_VIDEO)
    video_url: str | None = Field(description=_VIDEO_URL)
    poster_url: str | None = Field(description=_POSTER_URL)
    framing: Framing | None = None
    warnings: list[ShotWarning] = Field(default_factory=list)
    story: StoryOut | None = Field(None, description="a story job's shots (null: one photo)")

    _story = field_validator("story", mode="before")(story_out)


class JobSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    job_id: str
    user_id: int
    status: JobStatus
    progress: float
    duration: int
    resolution: str
    motion_preset: str
    created_at: str
    completed_at: str | None


class JobListOut(BaseModel):
    jobs: list[JobSummary]
    limit: int
    offset: int


class ErrorOut(BaseModel):
    ok: Literal[False] = False
    error: str
    status: int
    code: str | None = Field(
        None,
        description="a stable name for the case when the status alone does not say it:"
        " photo_empty, photo_unreadable, photo_damaged, photo_unsupported,"
        " photo_too_many_pixels, photo_too_small (400/413/415/422); idempotency_key_reused"
        " (422); not_ready, job_failed, job_cancelled (409); video_deleted (410);"
        " link_invalid, link_expired (403); a story's audio_unreadable (400), audio_too_large,"
        " request_too_large (413), audio_too_long, audio_silent, audio_start, story_too_long,"
        " stories_unavailable (422)",
    )


class RendererOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    # "waiting": a cluster's front while no worker is live (its jobs wait for one).
    status: Literal["loading", "ready", "failed", "waiting"]
    reason: str
    device: str


class HealthOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    ok: bool = Field(description="false (with status 503) while the service cannot take work")
    reason: str | None = Field(
        description="why it cannot: the renderer failed, disk below MIN_FREE_MB, paused, stopping"
    )
    renderer: RendererOut
    queue_length: int
    running_job: str | None
    paused: bool
    stopping: bool
    free_disk_mb: float
    bot: dict[str, Any]


class IndexOut(BaseModel):
    name: str
    version: str
    endpoints: dict[str, str]


class JobsQuery(BaseModel):
    """The query of GET /jobs; an empty value means the default."""

    model_config = ConfigDict(extra="ignore")

    user_id: int | None = Field(None, ge=0, le=2**53)
    status: JobStatus | None = None
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=2**31)


# The models whose schemas /openapi.json carries under components.
DOCUMENTED: list[type[BaseModel]] = [
    JobCreateJSON,
    StoryCreateJSON,
    JobCreated,
    JobStatusOut,
    JobResultOut,
    JobListOut,
    ErrorOut,
    HealthOut,
    IndexOut,
]
