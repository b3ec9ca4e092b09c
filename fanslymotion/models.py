"""The job vocabulary (statuses, progress phases) and the pydantic models of the HTTP API,
which validate requests and are the source of /openapi.json."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from . import __version__
from .motion import Aspect, Duration, Preset, Resolution


class JobStatus(StrEnum):
    """A job's state. queued -> processing -> completed | failed | cancelled; a retry, a stop or
    a crash brings a processing job back to queued."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE: frozenset[str] = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING})
TERMINAL: frozenset[str] = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class Phase(StrEnum):
    """What a render is doing. Every renderer reports one of these; the bot and the page have a
    text for each in every language (`phase_<value>` in texts.py)."""

    STARTING = "starting"
    LOADING = "loading"
    PREPARING = "preparing"
    RESUMED = "resumed"
    RENDERING = "rendering"
    ANIMATING = "animating"
    DECODING = "decoding"
    ENCODING = "encoding"
    FINISHING = "finishing"


@dataclass(frozen=True)
class Progress:
    """One progress report of a render: percent 0-100 of the whole job, the phase, the pass
    (`step` of `steps`, 0 of 0 when the phase has none) and the seconds left when known."""

    percent: float
    phase: Phase
    step: int = 0
    steps: int = 0
    eta: float | None = None

    @property
    def message(self) -> str:
        """The phase in plain English for logs and API clients, e.g. "animating 2/4"."""
        return f"{self.phase} {self.step}/{self.steps}" if self.steps else str(self.phase)


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


class JobCreateJSON(JobParams):
    image_data: str = Field(description="The photo, base64-encoded", min_length=1)


class JobCreated(BaseModel):
    job_id: str
    status: JobStatus
    queue_position: int | None
    estimated_time: float | None = Field(description="Seconds until the video is ready")


class JobStatusOut(BaseModel):
    job_id: str
    status: JobStatus
    progress: float = Field(ge=0, le=100)
    message: str
    queue_position: int | None
    eta_seconds: float | None
    created_at: str
    started_at: str | None
    completed_at: str | None
    attempts: int
    error: str | None
    renderer: str | None


class JobParameters(BaseModel):
    duration: int
    resolution: str
    motion_preset: str
    aspect: str
    strength: float
    steps: int


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
    video_url: str | None


class JobSummary(BaseModel):
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
        description="a stable name for the case when the status alone does not say it,"
        " e.g. photo_too_small, photo_damaged, photo_unsupported, photo_too_many_pixels",
    )


class RendererOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    status: Literal["loading", "ready", "failed"]
    reason: str
    device: str


class HealthOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    ok: bool
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


ENDPOINTS: dict[str, str] = {
    "GET /": "this page",
    "GET /health": "service health, renderer state, queue length",
    "GET /metrics": "Prometheus metrics",
    "GET /openapi.json": "the OpenAPI 3.1 description of this API",
    "POST /job/create": "queue a job (JSON with base64 image_data, or multipart with an image part)",
    "GET /jobs": "list jobs, newest first (user_id, status, limit, offset)",
    "GET /job/status/{job_id}": "status, progress and ETA",
    "GET /job/result/{job_id}": "parameters and video facts of a job",
    "GET /job/download/{job_id}": "the MP4 (HTTP Range supported)",
    "POST /job/{job_id}/cancel": "cancel a queued or running job",
    "GET /job/{job_id}/events": "Server-Sent Events: status and progress until the job ends",
}

_MODELS: list[type[BaseModel]] = [
    JobCreateJSON,
    JobCreated,
    JobStatusOut,
    JobResultOut,
    JobListOut,
    ErrorOut,
    HealthOut,
    IndexOut,
]


def openapi(auth: bool) -> dict[str, Any]:
    """OpenAPI 3.1 document built from the models above."""
    _, defs = models_json_schema(
        [(model, "validation") for model in _MODELS], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = defs["$defs"]
    multipart = _multipart_from(schemas["JobCreateJSON"])

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def answer(name: str, description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": ref(name)}}}

    error = answer("ErrorOut", "error")
    errors = {
        code: error
        for code in ("400", "401", "404", "409", "413", "415", "422", "429", "503", "507")
    }
    job_id = {
        "name": "job_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }
    security: list[dict[str, list[str]]] = [{"bearer": []}] if auth else []

    def op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "summary": summary,
            "responses": {**responses, **errors},
            "security": security,
            **extra,
        }

    paths: dict[str, Any] = {
        "/": {
            "get": {"summary": "API information", "responses": {"200": answer("IndexOut", "ok")}}
        },
        "/health": {"get": {"summary": "Health", "responses": {"200": answer("HealthOut", "ok")}}},
        "/job/create": {
            "post": op(
                "Queue a job",
                {"201": answer("JobCreated", "created"), "200": answer("JobCreated", "replayed")},
                parameters=[
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 200},
                    },
                ],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {"schema": ref("JobCreateJSON")},
                        "multipart/form-data": {"schema": multipart},
                    },
                },
            )
        },
        "/jobs": {
            "get": op(
                "List jobs, newest first",
                {"200": answer("JobListOut", "ok")},
                parameters=[
                    {"name": "user_id", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": ["queued", "processing", "completed", "failed", "cancelled"],
                        },
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                ],
            )
        },
        "/job/status/{job_id}": {
            "get": op("Job status", {"200": answer("JobStatusOut", "ok")}, parameters=[job_id])
        },
        "/job/result/{job_id}": {
            "get": op("Job result", {"200": answer("JobResultOut", "ok")}, parameters=[job_id])
        },
        "/job/download/{job_id}": {
            "get": op(
                "Download the video",
                {
                    "200": {"description": "the MP4", "content": {"video/mp4": {}}},
                    "206": {"description": "a byte range", "content": {"video/mp4": {}}},
                    "410": error,
                    "416": {"description": "range not satisfiable"},
                },
                parameters=[job_id],
            )
        },
        "/job/{job_id}/cancel": {
            "post": op("Cancel a job", {"200": answer("JobStatusOut", "ok")}, parameters=[job_id])
        },
        "/job/{job_id}/events": {
            "get": op(
                "Server-Sent Events of a job",
                {"200": {"description": "event stream", "content": {"text/event-stream": {}}}},
                parameters=[job_id],
            )
        },
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "FanslyMotion", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if auth:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return document


def _multipart_from(create: dict[str, Any]) -> dict[str, Any]:
    properties = {k: v for k, v in create["properties"].items() if k != "image_data"}
    properties["image"] = {"type": "string", "contentMediaType": "application/octet-stream"}
    required = [name for name in create.get("required", []) if name != "image_data"] + ["image"]
    return {"type": "object", "required": required, "properties": properties}
