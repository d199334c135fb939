"""The HTTP side of billing's file downloads (the allowance roster, the provider statement, the district
summary): the OpenAPI operation whose 200 answer is a file, the ``format`` and ``lang`` query
parameters, and the response with its Content-Disposition. What is in the files is
:mod:`billing.exports` and :mod:`billing.settlement_exports`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from litestar import Response
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Schema,
)
from litestar.params import QueryParameter

from billing.exports import ExportFile
from billing.xlsx import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE

FormatQuery = Annotated[
    Literal["xlsx", "csv"],
    QueryParameter(name="format", description="xlsx (default) or csv (UTF-8 with a BOM)"),
]


@dataclass
class FileOperation(Operation):
    """A download's operation: its 200 answer is an XLSX workbook or a CSV file (one schema cannot
    say "either media type", so the document lists both under the one response)."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            ok.content = {
                XLSX_MEDIA_TYPE: OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
                ),
                CSV_MEDIA_TYPE: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING)),
            }


def file_response(file: ExportFile) -> Response[bytes]:
    """The file as an attachment (its ASCII name and its display name, RFC 6266 / 5987)."""
    return Response(
        content=file.content,
        media_type=file.media_type,
        headers={"Content-Disposition": file.content_disposition()},
    )
