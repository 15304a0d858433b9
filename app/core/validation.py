"""Field types shared by request schemas."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

# Human-chosen names: no path separators, no control characters, no surrounding blanks.
SafeName = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=200,
        strip_whitespace=False,
        pattern=r"^[^\s/\\\x00-\x1f\x7f](?:[^/\\\x00-\x1f\x7f]*[^\s/\\\x00-\x1f\x7f])?$",
    ),
]
# Client-chosen identifiers (request_id, Idempotency-Key): printable ASCII without spaces.
ClientKey = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[!-~]+$")]
