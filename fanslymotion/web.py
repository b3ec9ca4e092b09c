"""The web page: `GET /` for browsers, its static files, and the camera-path route it previews.

The page is plain HTML, CSS and JavaScript modules under `static/`, served as they are (no build
step, nothing from the internet). API clients asking `/` for JSON keep getting the JSON index.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import api_input, camera, models, motion, openapi, overlay, photo, subject
from .errors import InvalidParams, UnsupportedMedia

if TYPE_CHECKING:
    from .config import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Renderers(Protocol):
    @property
    def renderer_name(self) -> str:
        """The renderer that serves, or the one loading."""
        ...


class PageDeps(Protocol):
    """What the page uses: the settings, and the job service's renderer name for /camera."""

    @property
    def settings(self) -> Settings: ...

    @property
    def jobs(self) -> _Renderers: ...


ServiceOf = Callable[[web.Request], PageDeps]


# Largest side the camera route takes: far beyond any photo MAX_PIXELS lets through.
MAX_SIDE = 100_000
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_JSON_TYPES = ("application/json", "application/*")


class _CameraFields(BaseModel):
    """The job parameters that shape a camera path, the same in both forms of `/camera`."""

    model_config = ConfigDict(extra="forbid")

    duration: motion.Duration
    resolution: motion.Resolution
    motion_preset: motion.Preset
    aspect: motion.Aspect = "auto"
    strength: float = Field(0.5, ge=0.0, le=1.0)
    fps: models.JobFps | None = None
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="adds the seed's drift")
    loop: bool = False


class CameraQuery(_CameraFields):
    """The query of `GET /camera`: a photo size and the job parameters that shape the path."""

    width: int = Field(ge=1, le=MAX_SIDE, description="Photo width in pixels, as displayed")
    height: int = Field(ge=1, le=MAX_SIDE, description="Photo height in pixels, as displayed")
    focus_x: float | None = Field(None, ge=0.0, le=1.0)
    focus_y: float | None = Field(None, ge=0.0, le=1.0)
    camera: str | None = Field(None, max_length=4000, description="the camera object as JSON")


class CameraBody(_CameraFields):
    """The body of `POST /camera`: /job/create's fields (no user), with or without the photo.
    With it, the subject is looked for as a job's would be; without it, width and height."""

    width: int | None = Field(None, ge=1, le=MAX_SIDE)
    height: int | None = Field(None, ge=1, le=MAX_SIDE)
    focus: models.Focus | None = None
    camera: models.CameraIn | None = None


CAMERA_FIELDS = frozenset(CameraBody.model_fields)


@dataclass(frozen=True)
class CameraAsk:
    """What a camera preview is asked for, from either form of the route."""

    size: tuple[int, int] | None
    duration: int
    resolution: str
    preset: str
    aspect: str
    strength: float
    fps: int | None
    seed: int | None
    shot: camera.Shot


def prefers_html(accept: str) -> bool:
    """Whether an Accept header ranks HTML above JSON. `*/*` alone (curl, aiohttp) is JSON;
    a tie between explicit HTML and JSON goes to JSON, so API clients are never surprised."""
    html = json = 0.0
    for item in accept.split(","):
        kind, _, params = item.strip().partition(";")
        kind = kind.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if kind in _HTML_TYPES:
            html = max(html, quality)
        elif kind in _JSON_TYPES:
            json = max(json, quality)
    return html > 0.0 and html > json


def content_policy(public_url: str) -> str:
    """The page's Content-Security-Policy: everything from this service (and PUBLIC_URL's
    origin, where video links point), nothing from elsewhere, no inline script."""
    media = "'self' blob:"
    parsed = urlsplit(public_url)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        media = f"{media} {parsed.scheme}://{parsed.netloc}"
    return (
        f"default-src 'self'; img-src {media} data:; media-src {media}; connect-src 'self';"
        " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def page_middleware(service_of: ServiceOf) -> Middleware:
    """`GET /`: the page for a browser; everyone else gets the API's own answer (the JSON
    index). A middleware, so it does not matter how the API registers its `/`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/" or request.method not in ("GET", "HEAD"):
            return await handler(request)
        if prefers_html(request.headers.get("Accept", "")):
            policy = content_policy(service_of(request).settings.public_url)
            response: web.StreamResponse = web.FileResponse(
                STATIC_DIR / "index.html",
                headers={
                    "Content-Type": "text/html; charset=utf-8",
                    "Cache-Control": "no-cache",
                    "Content-Security-Policy": policy,
                },
            )
        else:
            response = await handler(request)
        response.headers["Vary"] = "Accept"
        return response

    return middleware


def _validation_message(exc: ValidationError) -> str:
    return api_input.validation_message(exc, "query")


def parse_camera_query(query: dict[str, str], settings: Settings) -> CameraQuery:
    """Check the query as /job/create checks a form; InvalidParams (422) names what is wrong."""
    data: dict[str, Any] = {k: v for k, v in query.items() if v != ""}
    for name in ("duration", "fps"):  # query values are text; Literal[3] wants 3
        if str(data.get(name, "")).isdigit():
            data[name] = int(data[name])
    try:
        params = CameraQuery.model_validate(data)
    except ValidationError as exc:
        raise InvalidParams(_validation_message(exc)) from None
    if params.width * params.height > settings.max_pixels:
        raise InvalidParams(
            f"the photo has too many pixels: at most {settings.max_pixels / 1e6:g} megapixels"
        )
    return params


def camera_ask(params: CameraQuery) -> CameraAsk:
    """The GET route's query as an ask: focus from focus_x and focus_y, camera from JSON."""
    focus = None
    if (params.focus_x is None) != (params.focus_y is None):
        raise InvalidParams("focus_x and focus_y go together")
    if params.focus_x is not None and params.focus_y is not None:
        focus = {"x": params.focus_x, "y": params.focus_y}
    try:
        raw = None if params.camera is None else json.loads(params.camera)
    except (json.JSONDecodeError, RecursionError):
        raise InvalidParams("camera: a JSON object") from None
    return CameraAsk(
        (params.width, params.height),
        params.duration,
        params.resolution,
        params.motion_preset,
        params.aspect,
        params.strength,
        params.fps,
        params.seed,
        _shot(focus, raw, params.loop),
    )


def _shot(focus: Any, raw_camera: Any, loop: bool) -> camera.Shot:
    """The shot of an ask, checked as /job/create checks it (pydantic's words, then ours)."""
    if raw_camera is not None:
        try:
            raw_camera = models.CameraIn.model_validate(raw_camera).model_dump()
        except ValidationError as exc:
            raise InvalidParams("camera." + _validation_message(exc)) from None
    return camera.make_shot(focus=focus, camera=raw_camera, loop=loop)


async def read_camera_body(
    request: web.Request, settings: Settings
) -> tuple[CameraAsk, bytes | None]:
    """`POST /camera`'s body in /job/create's two forms: JSON (image_data in base64, optional)
    or multipart (an `image` part, optional; focus and camera as JSON text)."""
    if request.content_type == "application/json":
        data, image = await api_input.read_json_photo(request, settings)
    elif request.content_type == "multipart/form-data":
        fields, image = await api_input.read_form(request, settings, CAMERA_FIELDS)
        data = api_input.form_values(fields)
    else:
        raise UnsupportedMedia("send application/json or multipart/form-data")
    api_input.refuse_decimals(data)
    try:
        body = CameraBody.model_validate(data, strict=request.content_type == "application/json")
    except ValidationError as exc:
        raise InvalidParams(_validation_message(exc)) from None
    if image is None and (body.width is None or body.height is None):
        raise InvalidParams("width and height are needed without a photo")
    size = None if body.width is None or body.height is None else (body.width, body.height)
    ask = CameraAsk(
        size,
        body.duration,
        body.resolution,
        body.motion_preset,
        body.aspect,
        body.strength,
        body.fps,
        body.seed,
        _shot(
            None if body.focus is None else body.focus.model_dump(),
            None if body.camera is None else body.camera.model_dump(),
            body.loop,
        ),
    )
    return ask, image


def _working_size(renderer: str, aspect: str, settings: Settings) -> tuple[int, int] | None:
    """The size the SVD renderer cuts the photo to first; None for the motion renderer."""
    if renderer != "svd":
        return None
    from . import svd  # already loaded when SVD is the renderer (it imports torch)

    return svd.svd_working_size(aspect, settings.svd_size)


def camera_path(
    params: CameraQuery | CameraAsk,
    settings: Settings,
    renderer: str,
    image: bytes | None = None,
) -> dict[str, Any]:
    """The camera route's body: output size, frame count, one crop box per frame, how the
    path is aimed (`framing`, `subject`) and the warnings a job would get. With the photo the
    subject is looked for (faces, saliency) as a job's is; without it the path is centred
    unless focus or keyframes aim it. CPU work: runs in an executor."""
    ask = camera_ask(params) if isinstance(params, CameraQuery) else params
    found: subject.Subject | None = None
    if image is not None:
        picture = photo.load_photo(
            image, max_pixels=settings.max_pixels, min_side=settings.min_side
        )
        size = picture.size
        if ask.shot.focus is None and not ask.shot.keyframes:
            found = subject.find_subject(picture)
        picture.close()
    else:
        assert ask.size is not None
        size = ask.size
    out_w, out_h = motion.output_size(ask.resolution, ask.aspect, *size)
    aspect = motion.resolve_aspect(ask.aspect, *size)
    fps = ask.fps or settings.fps
    frames = ask.duration * fps
    if ask.shot.keyframes:
        camera.check_keyframes(ask.shot.keyframes, size, (out_w, out_h))
    shot = camera.aim(ask.shot, found)
    crop = _working_size(renderer, aspect, settings)
    if crop is None:
        path = camera.plan(  # rolled as the motion renderer rolls it: the same fitted boxes
            ask.preset,
            ask.strength,
            size,
            (out_w, out_h),
            shot=shot,
            seed=ask.seed,
            roll=settings.camera_roll,
        )
        boxes = list(path.boxes(frames))
    else:  # SVD: the working crop the shot needs, the path over its frames (camera.svd_framing)
        (cx0, cy0, cx1, _), inner = camera.svd_framing(
            ask.preset, ask.strength, size, (out_w, out_h), crop, shot=shot, seed=ask.seed
        )
        k = (cx1 - cx0) / crop[0]  # photo px per working px
        boxes = [
            (cx0 + x0 * k, cy0 + y0 * k, cx0 + x1 * k, cy0 + y1 * k)
            for x0, y0, x1, y1 in inner.boxes(frames)
        ]
    warned = camera.prepare_warnings(
        shot, ask.preset, ask.strength, size, (out_w, out_h), ask.resolution, renderer
    )
    assert shot.subject is not None
    return {
        "ok": True,
        "renderer": renderer,
        "photo": {"width": size[0], "height": size[1]},
        "output": {"width": out_w, "height": out_h},
        "aspect": aspect,
        "fps": fps,
        "frames": frames,
        "duration": ask.duration,
        "framing": shot.subject.framing,
        "subject": shot.subject.as_dict(),
        "loop": shot.loop,
        "camera": shot.camera_dict(),
        "warnings": warned,
        "boxes": [[round(v, 3) for v in box] for box in boxes],
    }


def camera_route(service_of: ServiceOf) -> Handler:
    """`GET /camera?width=&height=&duration=&resolution=&motion_preset=&aspect=&strength=`
    (and fps, seed, loop, focus_x, focus_y, camera as JSON); `POST /camera` takes the same
    fields as /job/create's body, with the photo, to find its subject."""

    async def handler(request: web.Request) -> web.StreamResponse:
        service = service_of(request)
        settings: Settings = service.settings
        image: bytes | None = None
        params: CameraQuery | CameraAsk
        if request.method == "POST":
            params, image = await read_camera_body(request, settings)
        else:
            params = parse_camera_query(dict(request.query), settings)
        # The renderer that serves, or the one loading (SVD takes a while to load).
        renderer = service.jobs.renderer_name
        work = functools.partial(camera_path, params, settings, renderer, image)
        body = await asyncio.get_running_loop().run_in_executor(None, work)
        return web.json_response(body)

    return handler


def config_route(service_of: ServiceOf) -> Handler:
    """`GET /web/config`: what the page needs to know before it talks to the API."""

    async def handler(request: web.Request) -> web.StreamResponse:
        settings: Settings = service_of(request).settings
        body = {
            "ok": True,
            "token_required": settings.api_token is not None,
            "max_upload_bytes": settings.max_upload_bytes,
            "max_upload_mb": settings.max_upload_mb,
            "max_pixels": settings.max_pixels,
            "min_side": settings.min_side,
            "fps": settings.fps,
            "supported": photo.SUPPORTED_TEXT,
            "durations": list(motion.DURATIONS),
            "resolutions": list(motion.RESOLUTIONS),
            "presets": list(motion.PRESETS),
            "aspects": list(motion.ASPECTS),
            # What /job/create and POST /camera take, so the page offers only those.
            "job_fields": sorted(models.JobParams.model_fields),
            "camera_fields": sorted(CameraBody.model_fields),
            # A story's watermark logo (issue 25): the page refuses a file past these in words.
            "max_logo_bytes": overlay.MAX_LOGO_BYTES,
            "max_logo_side": overlay.MAX_LOGO_SIDE,
        }
        return web.json_response(body, headers={"Cache-Control": "no-cache"})

    return handler


async def favicon(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "favicon.svg", headers={"Content-Type": "image/svg+xml"})


_OBJECT = {"application/json": {"schema": {"type": "object"}}}
_CAMERA_ERRORS = {
    code: openapi.answer("ErrorOut", what)
    for code, what in [
        ("400", "an unreadable body or photo"),
        ("413", "too large a body or photo"),
        ("415", "neither JSON nor a form, or a photo in a format not read"),
        ("422", "what /job/create would refuse"),
    ]
}


def _camera_body(schemas: dict[str, Any]) -> dict[str, Any]:
    del schemas  # /job/create's fields without user_id, described loosely
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "multipart/form-data": {"schema": {"type": "object"}},
        },
    }


def routes(service_of: ServiceOf) -> list[openapi.Route]:
    """The page's routes that `GET /` and /openapi.json list with the API's."""
    camera_handler = camera_route(service_of)
    path_answer = {"200": {"description": "the camera path", "content": _OBJECT}}
    return [
        openapi.Route(
            "GET",
            "/camera",
            camera_handler,
            "the camera path for a photo of a size: crop boxes, framing, warnings",
            {**path_answer, **_CAMERA_ERRORS},
            parameters=openapi.query_parameters(CameraQuery),
        ),
        openapi.Route(
            "POST",
            "/camera",
            camera_handler,
            "the camera path for a photo sent as to /job/create (its subject looked for)",
            {**path_answer, **_CAMERA_ERRORS},
            body=_camera_body,
        ),
        openapi.Route(
            "GET",
            "/web/config",
            config_route(service_of),
            "what the web page needs first: upload limits, the choices, the ways in",
            {"200": {"description": "the page's configuration", "content": _OBJECT}},
        ),
    ]


def add_routes(
    app: web.Application, page_routes: list[openapi.Route], service_of: ServiceOf
) -> None:
    """Register the page, its files and its routes on the API's application (before it starts)."""
    app.middlewares.append(page_middleware(service_of))
    app.router.add_get("/favicon.ico", favicon)
    for route in page_routes:
        app.router.add_route(route.method, route.path, route.handler)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
