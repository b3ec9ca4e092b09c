"""The front's HTTP routes that only its workers use (the worker token opens them): the photo
of the attempt a worker renders (and a story's other photos, music and logo), and the upload
of its finished MP4. No shared file system."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..errors import BadRequest
from .front import ClusterExecutor

Queue = Callable[[web.Request], ClusterExecutor]


def add_routes(app: web.Application, queue_of: Queue) -> None:
    async def photo(request: web.Request) -> web.StreamResponse:
        queue = queue_of(request)
        path = await queue.photo_for(queue.check_worker(request))
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})

    async def story_file(request: web.Request) -> web.StreamResponse:
        queue = queue_of(request)
        fence = queue.check_worker(request)
        path = await queue.story_file_for(fence, request.match_info["name"])
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})

    async def video(request: web.Request) -> web.Response:
        queue = queue_of(request)
        fence = queue.check_worker(request)
        job = await queue.accept_video(fence, request.content, _facts(request))
        return web.json_response({"ok": True, "job_id": job.job_id, "status": job.status})

    async def hello(request: web.Request) -> web.Response:
        """A worker checks its token at start."""
        queue = queue_of(request)
        queue.check_token(request)
        return web.json_response({"ok": True, "mode": "cluster"})

    app.router.add_get("/internal/worker", hello)
    app.router.add_get("/internal/jobs/{job_id}/photo", photo)
    app.router.add_get("/internal/jobs/{job_id}/story/{name}", story_file)
    app.router.add_put("/internal/jobs/{job_id}/video", video)


def _facts(request: web.Request) -> dict[str, Any]:
    """What the worker says of its video (headers, since the body is the file itself)."""
    try:
        return {
            "width": int(request.headers["X-Width"]),
            "height": int(request.headers["X-Height"]),
            "frames": int(request.headers["X-Frames"]),
            "render_seconds": float(request.headers["X-Render-Seconds"]),
            "renderer": request.headers["X-Renderer"],
        }
    except (KeyError, ValueError) as exc:
        raise BadRequest(f"missing or bad video header: {exc}") from None
