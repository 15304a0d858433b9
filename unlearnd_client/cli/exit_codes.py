"""The client commands' exit codes: a script can tell the outcomes apart without parsing output."""

from __future__ import annotations

from unlearnd_client.schemas import Outcome

OK = 0  # done: a request completed (exact or verified), a check passed
USAGE = 2  # bad arguments (click's own code for usage errors)
FAILED = 3  # the forget request (or training job) FAILED
CANCELLED = 4  # it was CANCELLED
UNVERIFIED = 5  # it SUCCEEDED, but its result is certified unverified (accepted after failing verification)
API_ERROR = 6  # the API answered an error status, or could not be reached after every retry
CHECK_FAILED = 7  # a checksum mismatch, an invalid certificate signature, a broken audit chain
TIMEOUT = 8  # --wait gave up before the request finished (it goes on)

BY_OUTCOME = {
    Outcome.COMPLETED: OK,
    Outcome.UNVERIFIED: UNVERIFIED,
    Outcome.FAILED: FAILED,
    Outcome.CANCELLED: CANCELLED,
}

HELP = """\b
Exit codes of the client commands:
  0  done: the request completed (exact or verified), the check passed
  2  usage error (bad or missing arguments, no API key)
  3  the forget request (or training job) FAILED
  4  it was CANCELLED
  5  it SUCCEEDED but is certified UNVERIFIED (accepted after failing verification)
  6  API error: an error answer (problem+json), or no answer after retries
  7  check failed: sha256 mismatch, invalid signature, broken audit chain
  8  --wait timed out (the request goes on)"""
