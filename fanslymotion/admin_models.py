"""The admin API's models: what `/admin/*` answers and takes (they feed OpenAPI too)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Source = Literal["api", "telegram"]


class Owner(BaseModel):
    """Who ordered a job: its source and the user id there (a Telegram id for `telegram`)."""

    source: Source
    user_id: int
    id: str = Field(description="`source:user_id`, the owner's id in /admin/users/{owner}")


class AdminJob(BaseModel):
    """A job as the operator sees it."""

    job_id: str
    status: str
    owner: Owner
    duration: int
    resolution: str
    motion_preset: str
    aspect: str
    fps: int
    seed: int
    steps: int
    attempts: int
    renderer: str | None
    render_seconds: float | None
    error: str | None
    progress: float
    phase: str
    phase_step: int
    phase_steps: int
    created_at: str
    started_at: str | None
    completed_at: str | None
    queue_position: int | None = None
    eta_seconds: float | None = None
    age_seconds: float | None = None
    video_url: str | None = None
    preview_url: str | None = None


class Versions(BaseModel):
    service: str = Field(description="the package version")
    commit: str | None = Field(description="the commit it runs from, when known")
    label: str = Field(description="version+commit")
    schema_version: int = Field(description="migrations the service's SQLite database has had")
    cluster_schema: int | None = Field(
        None, description="cluster mode: migrations the PostgreSQL schema has had"
    )


class Overview(BaseModel):
    """GET /admin/overview: what runs now."""

    model_config = ConfigDict(extra="allow")

    mode: Literal["single", "cluster"]
    versions: Versions
    renderer: dict[str, Any]
    paused: bool
    stopping: bool
    free_disk_mb: float
    min_free_mb: int
    disk_low: bool
    queue_length: int
    running: list[AdminJob]
    workers: list[dict[str, Any]] = Field(
        default_factory=list,
        description="cluster mode: every worker with its state, job, heartbeat age, jobs done,"
        " version and whether it differs from the front's (`version_differs`)",
    )
    daily_seconds_per_user: int | None


class QueueOut(BaseModel):
    """GET /admin/queue: the waiting jobs in dispatch order."""

    paused: bool
    jobs: list[AdminJob]


class JobsOut(BaseModel):
    jobs: list[AdminJob]
    limit: int
    offset: int


class OwnerOut(BaseModel):
    owner: Owner
    jobs_today: int
    seconds_today: int
    jobs_30d: int
    seconds_30d: int
    failed_30d: int
    last_seen: str | None
    blocked: bool
    daily_seconds: int | None = Field(
        description="the operator's limit for this owner (None: the service's)"
    )
    daily_limit: int | None = Field(description="the limit that applies (None: no limit)")
    name: str | None = Field(
        None, description="a Telegram user's first and last name as Telegram last sent them"
    )
    username: str | None = Field(None, description="a Telegram user's @username, without the @")


class UsersOut(BaseModel):
    users: list[OwnerOut]
    daily_seconds_per_user: int | None


class OwnerRuleIn(BaseModel):
    """PUT /admin/users/{owner}: the fields given change, the others stay."""

    model_config = ConfigDict(extra="forbid")

    blocked: bool | None = None
    daily_seconds: int | None = Field(
        None, ge=0, description="seconds of video per UTC day; null: DAILY_SECONDS_PER_USER"
    )


class PausedOut(BaseModel):
    paused: bool


class StatsOut(BaseModel):
    """GET /admin/stats: the figures of a window."""

    model_config = ConfigDict(extra="allow")

    window: Literal["24h", "30d", "today"]
    since: str
    bucket: Literal["hour", "day"]
    renders: list[dict[str, Any]]
    median_render_seconds: dict[str, dict[str, float]]
    queue_wait_seconds: dict[str, float | None]
    jobs: int
    completed: int
    failed: int
    cancelled: int
    failure_rate: float | None


DOCUMENTED: list[type[BaseModel]] = [
    Overview,
    QueueOut,
    JobsOut,
    AdminJob,
    UsersOut,
    OwnerOut,
    OwnerRuleIn,
    PausedOut,
    StatsOut,
]
