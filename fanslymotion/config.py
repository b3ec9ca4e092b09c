"""Settings from the environment and `.env` (prefix FANSLYMOTION_)."""

from __future__ import annotations

import base64
import binascii
import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .video import X264_PRESETS

PREFIX = "FANSLYMOTION_"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
MIN_TOKEN = 16
"""The fewest characters a token (API_TOKEN, WORKER_TOKEN, METRICS_TOKEN) may have."""
_DEVICE = re.compile(r"(cpu|cuda(:\d+)?)?")


def _int_list(value: object) -> object:
    """Accept "1,2,3" (the natural way to write a list in an env var) as well as a JSON list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    return value


def parse_secret(secret: str) -> bytes:
    """The key of a `whsec_<base64>` secret (the Standard Webhooks form)."""
    if not secret.startswith("whsec_"):
        raise ValueError("must look like whsec_<base64>")
    try:
        text = secret.removeprefix("whsec_")
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise ValueError("the part after whsec_ is not base64") from None
    if len(key) < 16:
        raise ValueError("the key must be at least 16 bytes")
    return key


class Settings(BaseSettings):
    """Every knob of the service. The README lists them with their defaults."""

    model_config = SettingsConfigDict(
        env_prefix="FANSLYMOTION_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # network
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_token: SecretStr | None = None
    public_url: str = ""  # base for video_url; empty: relative URLs
    link_ttl: float = Field(86400.0, gt=0)  # seconds a signed video or poster link is valid

    # storage
    data_dir: Path = Path("./data")
    input_retention: Literal["delete", "archive", "keep"] = "delete"
    archive_after_days: float = Field(7.0, ge=0)
    prune_after_days: float = Field(30.0, ge=0)
    min_free_mb: int = Field(500, ge=0)
    housekeeping_interval: float = Field(3600.0, gt=0)

    # rendering
    renderer: Literal["auto", "motion", "svd"] = "auto"
    svd_model: str = "stabilityai/stable-video-diffusion-img2vid-xt"
    svd_size: int = Field(1024, ge=64, le=2048, multiple_of=64)
    svd_steps: int = Field(25, ge=1, le=100)
    svd_device: str = ""  # empty: cuda when available
    svd_dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"  # auto: fp16 on CUDA
    svd_compile: bool = False  # torch.compile the UNet (for CUDA): faster after a warm-up
    fps: int = Field(24, ge=1, le=60)  # a job's default; a job may ask for 24 or 30
    # The seed's variation rolls the camera slightly on the camera-motion renderer; a rolled
    # frame costs about twice an upright one's CPU (docs/benchmarks.md), so it can be turned off.
    camera_roll: bool = True
    crf: int = Field(20, ge=0, le=51)
    x264_preset: str = "veryfast"
    torch_threads: int = Field(0, ge=0)  # 0: torch's default

    # queue
    max_queued: int = Field(10, ge=1)
    max_active_per_user: int = Field(2, ge=1)
    max_retries: int = Field(2, ge=0)
    retry_backoff: float = Field(5.0, ge=0)
    job_timeout: float = Field(1800.0, gt=0)
    progress_interval: float = Field(0.5, gt=0)
    stop_grace: float = Field(10.0, ge=0)  # seconds a stop waits for the running job

    # uploads
    max_upload_mb: float = Field(20.0, gt=0)
    max_pixels: int = Field(50_000_000, ge=4096)
    min_side: int = Field(64, ge=16)
    # A story's whole request (its photos, music and logo together); issue 25.
    max_story_mb: float = Field(100.0, gt=0)

    # telegram
    bot_token: SecretStr | None = None
    telegram_api: str = "https://api.telegram.org"
    allowed_users: Annotated[list[int], NoDecode] = []
    admins: Annotated[list[int], NoDecode] = []
    bot_progress_interval: float = Field(1.0, gt=0)

    # webhooks
    webhook_secret: SecretStr | None = None  # whsec_<base64>; unset: webhooks are off
    webhook_retry_hours: float = Field(24.0, gt=0)
    webhook_backoff: float = Field(5.0, gt=0)  # seconds before the first retry, doubling
    webhook_allow_hosts: Annotated[list[str], NoDecode] = []

    # cluster mode: set DATABASE_URL (postgresql://...) to keep jobs in PostgreSQL and render
    # them on `python -m fanslymotion worker` processes; empty: one box (SQLite, one GPU thread)
    database_url: SecretStr | None = None
    front_url: str = ""  # workers: the front's base URL, e.g. http://front.lan:8000
    worker_token: SecretStr | None = None  # shared by the front and its workers
    worker_timeout: float = Field(30.0, ge=1)  # seconds without a heartbeat: the job runs elsewhere
    worker_heartbeat: float = Field(5.0, gt=0)  # seconds between a worker's heartbeats
    worker_poll: float = Field(
        1.0, gt=0
    )  # seconds between a worker's polls (NOTIFY wakes it sooner)
    # seconds a worker retries a front it cannot reach (the photo's download, the video's upload)
    # before the attempt counts as a render error; a 503 upload is held past it
    worker_front_retry: float = Field(60.0, ge=1)

    # operators: the admin page and API, usage limits
    admin_token: SecretStr | None = None  # unset: /admin/* answers 403 (the operator's room is off)
    # seconds of video one owner may order per UTC day; unset: no limit
    daily_seconds_per_user: int | None = Field(None, ge=1)

    log_level: str = "INFO"

    # trust (README, "Authentication")
    worker_token_previous: SecretStr | None = None  # still accepted while workers rotate
    metrics_token: SecretStr | None = None  # opens /metrics (as API_TOKEN does), for scrapers
    miniapp_max_age: float = Field(86400.0, gt=0)  # seconds a Mini App's launch data is valid

    _split_ids = field_validator("allowed_users", "admins", mode="before")(_int_list)

    # Checked here, at start, rather than when the first job fails on them.

    @field_validator("public_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        text = value.strip()
        if not text:
            return ""
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                "must be an absolute http(s) URL such as https://example.com, or empty"
            )
        return text.rstrip("/")

    @field_validator("prune_after_days")
    @classmethod
    def _prune_after_archive(cls, value: float, info: ValidationInfo) -> float:
        archive = info.data.get("archive_after_days")
        if archive is not None and value < archive:
            raise ValueError(f"must be at least ARCHIVE_AFTER_DAYS ({archive:g})")
        return value

    @field_validator("x264_preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        preset = value.strip().lower()
        if preset not in X264_PRESETS:
            raise ValueError(f"must be one of {', '.join(X264_PRESETS)}")
        return preset

    @field_validator("svd_device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        device = value.strip().lower()
        if not _DEVICE.fullmatch(device):
            raise ValueError("must be empty, cpu, cuda or cuda:N")
        return device

    @field_validator("webhook_allow_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_secret(value.get_secret_value())  # ValueError names what is wrong
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        scheme = urlsplit(value.get_secret_value().strip()).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL, or empty for the single-box mode")
        return value

    @field_validator("front_url")
    @classmethod
    def _front_url(cls, value: str) -> str:
        text = value.strip()
        if text and urlsplit(text).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL such as http://front.lan:8000")
        return text.rstrip("/")

    @field_validator("worker_heartbeat")
    @classmethod
    def _beats_within_timeout(cls, value: float, info: ValidationInfo) -> float:
        timeout = info.data.get("worker_timeout")
        if timeout is not None and value * 2 > timeout:
            raise ValueError(f"must be at most half of WORKER_TIMEOUT ({timeout:g})")
        return value

    @field_validator(
        "api_token", "worker_token", "worker_token_previous", "metrics_token", "admin_token"
    )
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty or short token would be guessed (and "" matches a bare "Bearer").
        if value is not None and len(value.get_secret_value().strip()) < MIN_TOKEN:
            raise ValueError(
                f"must be at least {MIN_TOKEN} characters (leave it out to run without one)"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @property
    def cluster(self) -> bool:
        """True when jobs live in PostgreSQL and workers render them (DATABASE_URL is set)."""
        return self.database_url is not None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_story_bytes(self) -> int:
        return int(self.max_story_mb * 1024 * 1024)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "fanslymotion.sqlite3"

    @property
    def hot_dir(self) -> Path:
        return self.data_dir / "hot"

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "archive"

    @property
    def inputs_dir(self) -> Path:
        return self.data_dir / "inputs"


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each FANSLYMOTION_* name that is no setting (a typo is otherwise ignored
    silently), naming the closest known one."""
    known = [PREFIX + name.upper() for name in Settings.model_fields]
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper in known:
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{name} is not a FanslyMotion setting and is ignored{hint}")
    return warnings


def model_problem(settings: Settings) -> str | None:
    """Why SVD_MODEL cannot be used, when a renderer that may load it is set: it must be a
    folder holding the pipeline or a hub id (owner/name). Checked at start, as a file test."""
    if settings.renderer == "motion":
        return None  # never loaded
    value = settings.svd_model
    folder = Path(value).expanduser()
    if folder.is_dir():
        if not (folder / "model_index.json").is_file():
            return f"FANSLYMOTION_SVD_MODEL: {value} holds no model_index.json"
        return None
    if folder.exists():
        return f"FANSLYMOTION_SVD_MODEL: {value} is a file, not a model folder"
    if _HUB_ID.fullmatch(value) and not value.startswith("."):
        return None
    return f"FANSLYMOTION_SVD_MODEL: {value} is neither a model folder nor a hub id (owner/name)"
