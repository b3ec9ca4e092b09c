"""The data folder: its lock, the file helpers (atomic writes, moves, removal, free disk), the
photos' retention, leftovers cleaned at start, videos archived after N days and pruned after M.

Every blocking helper here is plain (no asyncio): callers run it in an executor."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from . import checkpoints, video
from .config import Settings
from .errors import Unavailable
from .store import Job, iso_utc
from .store.port import JobStore

log = logging.getLogger(__name__)


class DataFolderLock:
    """An exclusive lock on the data folder for as long as a service serves it.

    A second service on the same folder would take the first one's running jobs for interrupted
    ones and render them again, and delete its partial files as leftovers. The kernel drops an
    flock when its process dies, even by SIGKILL, so a restart never meets a stale lock. The
    file holds the owner's pid, for the error message.
    """

    NAME = "fanslymotion.lock"

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataFolderLock:
        fd = os.open(data_dir / cls.NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise Unavailable(
                f"another FanslyMotion process (pid {owner}) is serving the data folder {data_dir}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the only descriptor drops the lock
            self._fd = -1


def clean_leftovers(settings: Settings) -> int:
    """Remove temporary files a killed process left behind (partial videos, half-written photos).

    Runs before the queue starts, so nothing can be writing them.
    """
    removed = 0
    for folder in (
        settings.hot_dir,
        settings.inputs_dir,
        settings.archive_dir,
        settings.data_dir / "posters",
        settings.data_dir / "work",  # checkpoints a kill interrupted mid-write
    ):
        if not folder.is_dir():
            continue
        for path in folder.rglob(".*"):
            if path.is_file() and (
                path.name.endswith(".partial.mp4") or path.name.endswith(".tmp")
            ):
                path.unlink(missing_ok=True)
                removed += 1
    if removed:
        log.info("removed %d leftover temporary file(s)", removed)
    return removed


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, fsync, then rename: never a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def move_into_place(source: Path, target: Path) -> int:
    """Rename a finished file to its final name (same filesystem: atomic); returns its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(source, target)
    return target.stat().st_size


def move_file(source: Path, target: Path) -> bool:
    """Move a file that may cross filesystems (archive/ can be a mount); False if it is gone."""
    if not source.is_file():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError:
        # Across filesystems: copy under a temporary name, then rename, then drop the source.
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        source.unlink()
    return True


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def free_disk_mb(data_dir: Path) -> float:
    data_dir.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(data_dir).free / 1024 / 1024


def poster_path(settings: Settings, job_id: str) -> Path:
    return settings.data_dir / "posters" / f"{job_id}.jpg"


def make_poster(source: Path, poster: Path) -> Path:
    """The first frame of `source` as a JPEG at `poster`, made once: the cached file when there
    is one. Two first requests at once each write a temporary file of their own and rename it;
    the second rename replaces an identical file."""
    if poster.is_file():
        return poster
    poster.parent.mkdir(parents=True, exist_ok=True)
    tmp = poster.with_name(f".{poster.stem}.{uuid.uuid4().hex[:8]}.jpg.tmp")
    try:
        video.first_frame_jpeg(source, tmp)
        os.replace(tmp, poster)
    finally:
        remove_quietly(tmp)
    return poster


def story_inputs(data_dir: Path, job_id: str) -> Path:
    """A story job's other photos, music and logo: one folder beside its first photo."""
    return data_dir / "inputs" / f"{job_id}.story"


async def retire_input(settings: Settings, store: JobStore, job: Job) -> None:
    """Apply INPUT_RETENTION to the photo of a job that ended: delete it or move it to the
    archive; `keep` leaves it."""
    if job.input_path is None or settings.input_retention == "keep":
        return
    loop = asyncio.get_running_loop()
    if job.story:  # the story's other inputs go with its first photo (not archived)
        folder = story_inputs(settings.data_dir, job.job_id)
        await loop.run_in_executor(None, functools.partial(shutil.rmtree, folder, True))
    source = settings.data_dir / job.input_path
    kept: str | None = None
    if settings.input_retention == "archive":
        target = f"archive/inputs/{source.name}"
        try:
            await loop.run_in_executor(None, move_into_place, source, settings.data_dir / target)
            kept = target
        except FileNotFoundError:  # removed by hand, or lost: the row stops pointing at it
            log.warning("job %s: its photo %s is gone; nothing to archive", job.job_id, source.name)
    else:
        await loop.run_in_executor(None, remove_quietly, source)
    await store.set_paths(
        job.job_id, input_path=kept, output_path=job.output_path, archived=bool(job.archived)
    )


async def housekeeping(
    settings: Settings, store: JobStore, now: datetime | None = None
) -> tuple[int, int]:
    """Archive videos older than ARCHIVE_AFTER_DAYS, delete those older than PRUNE_AFTER_DAYS.

    Returns (archived, pruned). Database rows stay: a pruned job keeps its history.
    """
    loop = asyncio.get_running_loop()
    moment = now or datetime.now(UTC)
    # The same formatter as the rows' timestamps: fixed width, so text order is time order.
    archive_cutoff = iso_utc(moment - timedelta(days=settings.archive_after_days))
    prune_cutoff = iso_utc(moment - timedelta(days=settings.prune_after_days))
    archived = pruned = 0
    await remove_orphan_work(settings, store)
    for job in await store.finished_before(archive_cutoff):
        if job.status == "failed" and job.input_path and job.input_path.startswith("inputs/"):
            await retire_input(settings, store, job)  # kept this long for an operator's retry
        if job.output_path is None:
            continue
        source = settings.data_dir / job.output_path
        if job.completed_at is not None and job.completed_at < prune_cutoff:
            await loop.run_in_executor(None, remove_quietly, source)
            await loop.run_in_executor(None, remove_quietly, poster_path(settings, job.job_id))
            await store.set_paths(
                job.job_id, input_path=job.input_path, output_path=None, archived=True
            )
            pruned += 1
            log.info("job %s video pruned after %g days", job.job_id, settings.prune_after_days)
        elif not job.archived:
            relative = f"archive/{source.name}"
            moved = await loop.run_in_executor(
                None, move_file, source, settings.data_dir / relative
            )
            await store.set_paths(
                job.job_id,
                input_path=job.input_path,
                output_path=relative if moved else None,
                archived=True,
            )
            archived += 1
            log.info("job %s video archived", job.job_id)
    return archived, pruned


async def remove_orphan_work(settings: Settings, store: JobStore) -> int:
    """Remove the work folders (SVD checkpoints) of jobs that ended or no longer exist. The queue
    removes a job's folder when it ends; this catches the ones a crash or a bug left."""
    loop = asyncio.get_running_loop()
    root = settings.data_dir / "work"
    folders = await loop.run_in_executor(
        None, lambda: sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    )
    removed = 0
    for folder in folders:
        job = await store.get_job(folder.name)
        if job is None or job.terminal:
            await loop.run_in_executor(None, checkpoints.remove_work, folder)
            removed += 1
    if removed:
        log.info("removed %d orphan work folder(s)", removed)
    return removed


async def run_housekeeping(settings: Settings, store: JobStore) -> None:
    """The periodic task: one pass at start, then every HOUSEKEEPING_INTERVAL seconds."""
    while True:
        try:
            await housekeeping(settings, store)
        except Exception as exc:  # a full disk or a locked file must not end the task
            log.error("housekeeping failed: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(settings.housekeeping_interval)
