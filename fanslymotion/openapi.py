"""The route table's type and the OpenAPI 3.1 document built from it and from the API models."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from . import __version__, models

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The statuses any /job* route may answer with an ErrorOut body.
JOB_ERRORS = ("400", "401", "404", "409", "413", "415", "422", "429", "503", "507")
# 401 comes with a WWW-Authenticate challenge, 429 and 503 with Retry-After.
_ERROR_HEADERS = {
    "401": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    "429": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    "503": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
}


@dataclass(frozen=True)
class Route:
    """One route: what the router serves, what `GET /` lists and what OpenAPI describes.

    `responses` and `parameters` are OpenAPI fragments, `body` makes the request body from the
    component schemas; a `{job_id}` path parameter is added from the path. Routes under /job
    are the guarded ones (bearer token, job errors).
    """

    method: str
    path: str
    handler: Handler
    summary: str
    responses: dict[str, Any]
    parameters: list[dict[str, Any]] = field(default_factory=list)
    body: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    @property
    def guarded(self) -> bool:
        return self.path.startswith("/job")


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def answer(name: str, description: str) -> dict[str, Any]:
    """A JSON response whose body is the schema of model `name`."""
    return {"description": description, "content": {"application/json": {"schema": ref(name)}}}


JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI query parameters from a pydantic model of the query (one per field)."""
    schema = model.model_json_schema()
    parameters = []
    for name, prop in schema["properties"].items():
        options = [p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
        value = {k: v for k, v in options[0].items() if k != "title"}
        parameters.append({"name": name, "in": "query", "required": False, "schema": value})
    return parameters


# The admin API's routes (README "Operating") answer these with an ErrorOut body.
ADMIN_ERRORS = ("401", "403", "404", "409", "422", "503")


def document(
    routes: list[Route], auth: bool, extra_models: Sequence[type[BaseModel]] = ()
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` (with a bearer scheme when `auth`; the admin
    routes under /admin/ with the admin token's scheme)."""
    _, defs = models_json_schema(
        [(model, "validation") for model in [*models.DOCUMENTED, *extra_models]],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = defs["$defs"]
    error = answer("ErrorOut", "error")
    security: list[dict[str, list[str]]] = [{"bearer": []}] if auth else []
    paths: dict[str, Any] = {}
    for route in routes:
        operation: dict[str, Any] = {"summary": route.summary, "responses": dict(route.responses)}
        parameters = ([JOB_ID] if "{job_id}" in route.path else []) + route.parameters
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = route.body(schemas)
        if route.guarded:
            for code in JOB_ERRORS:
                extra = {"headers": _ERROR_HEADERS[code]} if code in _ERROR_HEADERS else {}
                operation["responses"].setdefault(code, {**error, **extra})
            operation["security"] = security
        if route.path.startswith("/admin/"):
            for code in ADMIN_ERRORS:
                extra = {"headers": _ERROR_HEADERS[code]} if code in _ERROR_HEADERS else {}
                operation["responses"].setdefault(code, {**error, **extra})
            operation["security"] = [{"admin": []}]
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    result: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "FanslyMotion", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if auth:
        result["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    if any(route.path.startswith("/admin/") for route in routes):
        result["components"].setdefault("securitySchemes", {})["admin"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "FANSLYMOTION_ADMIN_TOKEN",
        }
    return result


def create_body(schemas: dict[str, Any]) -> dict[str, Any]:
    """/job/create takes JSON (base64 photo) or the same fields as a multipart form."""
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [ref("JobCreateJSON"), ref("StoryCreateJSON")]}
            },
            "multipart/form-data": {
                "schema": _story_parts(_multipart_from(schemas["JobCreateJSON"]))
            },
        },
    }


def _story_parts(form: dict[str, Any]) -> dict[str, Any]:
    """A story in the form (issue 25): repeated `image` parts, `audio`, `logo` and `story`."""
    properties = dict(form["properties"])
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    properties["image"] = {
        "oneOf": [binary, {"type": "array", "items": binary, "minItems": 1, "maxItems": 10}],
        "description": "the photo; with a `story`, one part per shot, in order",
    }
    properties["audio"] = {
        **binary,
        "description": "a story's music (MP3, AAC/M4A, WAV, OGG/Opus, FLAC; 20 MB, 10 min)",
    }
    properties["logo"] = {**binary, "description": "a story's watermark logo (a small PNG)"}
    properties["story"] = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": ref("StoryIn"),
        "description": "the story as JSON text; duration and motion_preset are then per shot",
    }
    return {**form, "properties": properties}


def _multipart_from(create: dict[str, Any]) -> dict[str, Any]:
    properties = {k: v for k, v in create["properties"].items() if k != "image_data"}
    properties["image"] = {"type": "string", "contentMediaType": "application/octet-stream"}
    for name in ("focus", "camera"):  # objects travel as JSON text in a form
        if name in properties:
            properties[name] = {
                "type": "string",
                "contentMediaType": "application/json",
                "description": f"the {name} object as JSON text",
            }
    required = [name for name in create.get("required", []) if name != "image_data"] + ["image"]
    return {"type": "object", "required": required, "properties": properties}
