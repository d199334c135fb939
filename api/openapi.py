"""Completing the OpenAPI schema Litestar generates, so clients and the schema fuzz test
(``tests/integration/api/test_api_fuzz.py``) see what the API really serves: every problem response an
operation can give, which operations need the bearer token, and local times as times."""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import Litestar
from litestar._openapi.schema_generation import SchemaCreator
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.plugins import OpenAPISchemaPlugin
from litestar.routes import HTTPRoute
from litestar.typing import FieldDefinition

from api.problems import PROBLEM_JSON, Problem
from core.identity.authz import PUBLIC

BEARER = "bearer"

# Problems any operation may answer with; writes may also conflict or be too large.
_ANY = {
    400: "Malformed request",
    401: "Not signed in",
    403: "Not allowed for your role",
    404: "Not found, or not in your scope",
    422: "Invalid input (``code`` says which rule; ``errors`` or ``field`` where)",
    429: "Too many requests",
}
_WRITES = {409: "Conflicts with the current state", 413: "Payload too large", 423: "Account locked"}


def document_operations(app: Litestar) -> None:
    """Before the schema is first built: every route but the public ones requires the bearer token,
    and every API operation lists the problem responses it can give, with the problem body and media
    type (a handler's own entries win)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.opt.get("roles") != PUBLIC:
                handler.security = [{BEARER: []}]
            if not route.path.startswith("/api/"):
                continue
            writes = bool(set(handler.http_methods) - {"GET", "HEAD", "OPTIONS"})
            codes = {**_ANY, **(_WRITES if writes else {})}
            specs = {
                status: ResponseSpec(
                    data_container=Problem, media_type=PROBLEM_JSON, description=text, generate_examples=False
                )
                for status, text in codes.items()
            }
            handler.responses = {**specs, **(handler.responses or {})}


# What msgspec writes and reads for a naive ``datetime.time``: HH:MM[:SS[.ffffff]].
LOCAL_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$"


class LocalTimeSchema(OpenAPISchemaPlugin):
    """Litestar documents ``datetime.time`` as ``format: duration``; ours are wall-clock times of
    day (Asia/Shanghai) such as ``"08:00:00"``."""

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return value is dt.time

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        return Schema(
            type=OpenAPIType.STRING,
            pattern=LOCAL_TIME_PATTERN,
            description="Local time of day, HH:MM:SS (Asia/Shanghai)",
        )
