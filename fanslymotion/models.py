"""Pydantic models of the HTTP API: they validate requests and are the source of /openapi.json."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from . import __version__

Duration = Literal[3, 6, 8, 10, 12]
Resolution = Literal["360p", "480p", "720p", "1080p"]
Preset = Literal["micro", "pan_l", "pan_r", "tilt_up", "tilt_down", "dolly_in"]
Aspect = Literal["auto", "16:9", "9:16", "1:1", "4:3", "3:4"]
Status = Literal["queued", "processing", "completed", "failed", "cancelled"]


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
    status: Status
    queue_position: int | None
    estimated_time: float | None = Field(description="Seconds until the video is ready")


class JobStatusOut(BaseModel):
    job_id: str
    status: Status
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
    status: Status
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
    status: Status
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
    "GET /job/{job_id}/preview": "a small MP4 of the frames made so far (SVD, while it renders)",
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
        "/job/{job_id}/preview": {
            "get": op(
                "Live preview of a rendering job",
                {"200": {"description": "a small MP4", "content": {"video/mp4": {}}}},
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
