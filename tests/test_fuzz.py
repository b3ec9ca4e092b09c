"""API fuzzing: schemathesis against the live service's /openapi.json, bounded and seeded.

The service runs as `python -m fanslymotion` in a subprocess (schemathesis calls are
synchronous). The schema is built at import time from `api.openapi_document`, the function the
service answers /openapi.json with, so that pytest can list one test per operation;
`test_live_schema_is_the_fuzzed_one` checks that the running service serves exactly that
document. (schemathesis' `from_fixture`, which would load it from the live URL, fails under
pytest 9.2: it writes `Function._nodeid`, which pytest no longer has.)

Every operation of the schema gets its documented examples, schemathesis' coverage cases
(boundaries, missing and wrong-typed values, malformed and undeclared content types) and 25
generated cases, positive and negative; each response must not be a server error, must have a documented status code
and content type, and its JSON body must match the documented schema. Afterwards the service
is still healthy, logged no unhandled error, and its database is intact.
"""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fanslymotion import admin, admin_models, api

from .test_process import Process

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SEED = 20240601
MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def fuzzed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = Process(
        tmp_path_factory.mktemp("fuzz"),
        FANSLYMOTION_MAX_UPLOAD_MB="1",
        FANSLYMOTION_MAX_QUEUED="1000",
        FANSLYMOTION_MAX_ACTIVE_PER_USER="1000",
    )
    process.start()
    try:
        yield process
    finally:
        assert process.proc is not None
        if process.proc.poll() is None:
            process.proc.send_signal(signal.SIGTERM)
            try:
                process.proc.wait(timeout=20)
            except Exception:
                process.proc.kill()
                process.proc.wait()


def fuzz_config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {
                # Methods the schema does not list answer 405, which it does not document
                # per operation; routing is aiohttp's, and test_api checks a 405 once.
                "coverage": {"unexpected-methods": []},
                "stateful": {"enabled": False},
            },
            "request-timeout": 10,
        }
    )


# What the service serves: its own routes and the admin API the composition root adds.
DOCUMENT = api.openapi_document(
    auth=False, extra=admin.routes(), extra_models=admin_models.DOCUMENTED
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=fuzz_config())


def test_live_schema_is_the_fuzzed_one(fuzzed_service: Process) -> None:
    status, served = fuzzed_service.get("/openapi.json")
    assert status == 200 and served == DOCUMENT


@schema.parametrize()
def test_openapi_fuzz(case: schemathesis.Case[Any], fuzzed_service: Process) -> None:
    case.call_and_validate(base_url=f"http://127.0.0.1:{fuzzed_service.port}", checks=CHECKS)


def test_service_survived_the_fuzzing(fuzzed_service: Process) -> None:
    status, health = fuzzed_service.get("/health")
    assert status == 200 and health["ok"] is True
    log = fuzzed_service.log()
    assert "Traceback" not in log and "unhandled" not in log, log[-3000:]
    database: Path = fuzzed_service.data_dir / "fanslymotion.sqlite3"
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
