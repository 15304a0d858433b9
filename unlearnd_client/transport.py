"""One HTTP connection pool to the API: the key, retries, problem+json errors and cursor pages."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from unlearnd_client.errors import ApiError, ServiceUnreachable
from unlearnd_client.retry import RETRY_STATUSES, RetryableStatus, RetryPolicy, retrying

USER_AGENT = "unlearnd-client/0.1"


class Transport:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        headers = {"User-Agent": USER_AGENT}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.retry = retry or RetryPolicy()
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def send(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> httpx.Response:
        """One logical request: built once, so every retry sends the same bytes and headers (the
        Idempotency-Key included). Raises :class:`ApiError` for an error status."""
        if "params" in kwargs:
            kwargs["params"] = _without_none(kwargs["params"])
        request = self._http.build_request(method, path, **kwargs)
        try:
            for attempt in retrying(self.retry, request):
                with attempt:
                    response = self._http.send(request, stream=stream)
                    if response.status_code in RETRY_STATUSES:
                        _drain(response)
                        raise RetryableStatus(response)
        except RetryableStatus as last:
            raise ApiError.from_response(last.response) from None
        except httpx.TransportError as exc:
            raise ServiceUnreachable(f"{method} {request.url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            _drain(response)
            raise ApiError.from_response(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.send(method, path, **kwargs).json()

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A response whose body is read as it arrives (downloads, exports); closed on exit."""
        response = self.send(method, path, stream=True, **kwargs)
        try:
            yield response
        finally:
            response.close()

    @staticmethod
    def chunks(response: httpx.Response, size: int = 1 << 20) -> Iterator[bytes]:
        """A streamed body; a connection lost half-way is a :class:`ServiceUnreachable` too."""
        try:
            yield from response.iter_bytes(size)
        except httpx.TransportError as exc:
            raise ServiceUnreachable(f"{response.request.url}: the answer broke off: {exc}") from exc

    @staticmethod
    def lines(response: httpx.Response) -> Iterator[str]:
        try:
            yield from response.iter_lines()
        except httpx.TransportError as exc:
            raise ServiceUnreachable(f"{response.request.url}: the answer broke off: {exc}") from exc

    def pages(self, path: str, params: Mapping[str, Any] | None = None, page_size: int = 100) -> Iterator[dict]:
        """Every item of a cursor-paginated list, fetching a page only when the previous one is used up."""
        query = {**(params or {}), "page_size": page_size}
        while True:
            page = self.json("GET", path, params=query)
            yield from page["items"]
            token = page.get("next_page_token")
            if not token:
                return
            query["page_token"] = token


def _without_none(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if params is None else {k: v for k, v in params.items() if v is not None}


def _drain(response: httpx.Response) -> None:
    """Read the (small) error body so it can be parsed after the connection goes back to the pool."""
    try:
        response.read()
    finally:
        response.close()
