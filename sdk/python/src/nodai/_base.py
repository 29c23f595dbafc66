"""The request loop shared by every endpoint: build, send, retry, decode, raise.

``SyncAPIClient`` and ``AsyncAPIClient`` are the same loop over ``httpx.Client``
and ``httpx.AsyncClient``. They know headers, authentication, JSON and the
retry policy (``_retry``); they know nothing of keys, workflows or webhooks,
which live in ``resources/``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Awaitable, Callable, Dict, Literal, Mapping, Optional, Type, TypeVar, Union
from urllib.parse import quote

import httpx

from ._errors import APIConnectionError, APITimeoutError, NodaiError, error_from_response
from ._models import NOT_GIVEN, NotGiven, format_datetime, money_to_json
from ._retry import RetryPolicy, parse_retry_after
from ._version import __version__

__all__ = ["SyncAPIClient", "AsyncAPIClient", "Request", "path_segment", "DEFAULT_BASE_URL"]

log = logging.getLogger("nodai")

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
#: Longer than the server's default upstream timeout (30 s), so a slow upstream
#: comes back as the server's 504 rather than a client-side timeout.
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_MAX_RETRY_WAIT = 60.0

TimeoutTypes = Union[float, httpx.Timeout, None]

_S = TypeVar("_S", bound="SyncAPIClient")
_A = TypeVar("_A", bound="AsyncAPIClient")


def path_segment(value: str) -> str:
    """``value`` quoted as one path segment, so an id can never change the route."""
    if not isinstance(value, str) or value == "":
        raise ValueError(f"an id must be a non-empty string, got {value!r}")
    return quote(value, safe="")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return money_to_json(value)
    if isinstance(value, datetime):
        return format_datetime(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(body: Any) -> bytes:
    return json.dumps(body, default=_json_default, allow_nan=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Request:
    """One API call as the resources describe it."""

    method: str
    path: str
    params: Optional[Mapping[str, str]] = None
    #: The JSON body, or ``NOT_GIVEN`` for none.
    body: Any = NOT_GIVEN
    #: ``admin`` sends the admin token, ``key`` the API key (the query endpoint).
    auth: Literal["admin", "key"] = "admin"
    #: Overrides the client's API key for this call.
    api_key: Optional[str] = None
    #: Ask for ``text/event-stream`` and return the 2xx response unread.
    stream: bool = False
    #: Sent as the ``Idempotency-Key`` header. The server answers a repeat of
    #: the request with the first answer, so the loop may replay it even after
    #: a failure that followed sending (see ``_retry``).
    idempotency_key: Optional[str] = None
    #: The body already serialised (sent as is, instead of ``body``).
    content: Optional[bytes] = None
    #: The ``Content-Type`` of ``content``; default ``application/json``.
    content_type: Optional[str] = None
    #: The ``Accept`` header; default ``application/json`` (``text/event-stream``
    #: with ``stream``).
    accept: Optional[str] = None
    #: A repeat of the request does no harm (usage events: the server applies
    #: each ``source`` and ``id`` once), so the loop may replay it even after a
    #: failure that followed sending, as with an ``idempotency_key``.
    replayable: bool = False

    @property
    def idempotent(self) -> bool:
        """Whether a repeat of this request is answered as its first try."""
        return self.idempotency_key is not None or self.replayable


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value if value else None


class _BaseClient:
    """Configuration and the pieces of the loop that do no I/O."""

    def __init__(
        self,
        *,
        api_key: Optional[str],
        admin_token: Optional[str],
        base_url: Optional[str],
        timeout: TimeoutTypes,
        max_retries: int,
        retry_on_rate_limit: bool,
        max_retry_wait: float,
        default_headers: Optional[Mapping[str, str]],
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if max_retry_wait < 0:
            raise ValueError("max_retry_wait must be 0 or more")
        #: Sent as ``X-API-Key`` on queries (``NODAI_API_KEY`` when not given).
        self.api_key = api_key if api_key is not None else _env("NODAI_API_KEY")
        #: Sent as ``Authorization: Bearer`` on admin calls (``NODAI_ADMIN_TOKEN`` when not given).
        self.admin_token = admin_token if admin_token is not None else _env("NODAI_ADMIN_TOKEN")
        self.base_url = (base_url or _env("NODAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout
        self.retry_policy = RetryPolicy(
            max_retries=max_retries,
            retry_on_rate_limit=retry_on_rate_limit,
            max_retry_wait=max_retry_wait,
        )
        self._default_headers = dict(default_headers or {})

    @property
    def max_retries(self) -> int:
        return self.retry_policy.max_retries

    def __repr__(self) -> str:
        # Never the token or the key.
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _headers(self, request: Request) -> Dict[str, str]:
        default_accept = "text/event-stream" if request.stream else "application/json"
        headers = {
            "Accept": request.accept or default_accept,
            "User-Agent": f"nodai-python/{__version__}",
            **self._default_headers,
        }
        if request.auth == "admin":
            if self.admin_token:
                headers["Authorization"] = f"Bearer {self.admin_token}"
        else:
            # No key at all is sent as no header: the server's 401
            # missing_api_key is the one answer to that.
            key = request.api_key if request.api_key is not None else self.api_key
            if key:
                headers["X-API-Key"] = key
        if request.content is not None:
            headers["Content-Type"] = request.content_type or "application/json"
        elif request.body is not NOT_GIVEN:
            headers["Content-Type"] = "application/json"
        if request.idempotency_key is not None:
            headers["Idempotency-Key"] = request.idempotency_key
        return headers

    def _build(self, http: Union[httpx.Client, httpx.AsyncClient], request: Request) -> httpx.Request:
        content: Optional[bytes]
        if request.content is not None:
            content = request.content
        else:
            content = None if isinstance(request.body, NotGiven) else dumps(request.body)
        return http.build_request(
            request.method,
            self.base_url + request.path,
            params=dict(request.params) if request.params else None,
            headers=self._headers(request),
            content=content,
            timeout=self.timeout,
        )

    def _retry_delay_for(self, response: httpx.Response, retries_done: int) -> Optional[float]:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return self.retry_policy.after_status(retries_done, response.status_code, retry_after)

    @staticmethod
    def connection_error(error: httpx.TransportError) -> APIConnectionError:
        if isinstance(error, httpx.TimeoutException):
            return APITimeoutError(f"the request to the nodai server timed out: {error!r}")
        return APIConnectionError(f"could not reach the nodai server: {error!r}")

    @staticmethod
    def decode(response: httpx.Response) -> Any:
        """The JSON body of a 2xx response (``None`` when empty, as for 204)."""
        if not response.content:
            return None
        try:
            return json.loads(response.content)
        except ValueError:
            raise NodaiError(
                f"the server answered {response.status_code} with a body that is not JSON",
                status=response.status_code,
            ) from None


class SyncAPIClient(_BaseClient):
    def __init__(
        self,
        *,
        api_key: Optional[str],
        admin_token: Optional[str],
        base_url: Optional[str],
        timeout: TimeoutTypes,
        max_retries: int,
        retry_on_rate_limit: bool,
        max_retry_wait: float,
        default_headers: Optional[Mapping[str, str]],
        http_client: Optional[httpx.Client],
    ) -> None:
        super().__init__(
            api_key=api_key,
            admin_token=admin_token,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry_on_rate_limit=retry_on_rate_limit,
            max_retry_wait=max_retry_wait,
            default_headers=default_headers,
        )
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client()
        # A seam for tests of the retry schedule; time.sleep otherwise.
        self._sleep: Callable[[float], None] = time.sleep

    def send(self, request: Request) -> httpx.Response:
        """Send ``request``, retrying as ``RetryPolicy`` allows; a 2xx response or an error.

        With ``request.stream`` the 2xx response's body is left unread (the
        caller closes it); nothing is retried once that response arrived.
        """
        retries_done = 0
        while True:
            try:
                response = self._http.send(self._build(self._http, request), stream=request.stream)
            except httpx.TransportError as error:
                delay = self.retry_policy.after_transport_error(
                    retries_done, request.method, error, idempotent=request.idempotent
                )
                if delay is None:
                    raise self.connection_error(error) from error
                log.info("nodai: %r on %s %s; retrying in %.2fs", error, request.method, request.path, delay)
            else:
                if response.is_success:
                    return response
                if request.stream:
                    try:
                        response.read()  # the problem+json, to raise from
                    except httpx.TransportError as error:
                        raise self.connection_error(error) from error
                    finally:
                        response.close()
                delay = self._retry_delay_for(response, retries_done)
                if delay is None:
                    raise error_from_response(response)
                log.info(
                    "nodai: %d on %s %s; retrying in %.2fs",
                    response.status_code, request.method, request.path, delay,
                )
            self._sleep(delay)
            retries_done += 1

    def request(self, request: Request) -> Any:
        return self.decode(self.send(request))

    def request_text(self, request: Request) -> str:
        """The body of a 2xx response as text (a CSV report, say)."""
        return self.send(request).text

    def close(self) -> None:
        """Close the connection pool (not a ``http_client`` passed in: its owner closes it)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


class AsyncAPIClient(_BaseClient):
    def __init__(
        self,
        *,
        api_key: Optional[str],
        admin_token: Optional[str],
        base_url: Optional[str],
        timeout: TimeoutTypes,
        max_retries: int,
        retry_on_rate_limit: bool,
        max_retry_wait: float,
        default_headers: Optional[Mapping[str, str]],
        http_client: Optional[httpx.AsyncClient],
    ) -> None:
        super().__init__(
            api_key=api_key,
            admin_token=admin_token,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry_on_rate_limit=retry_on_rate_limit,
            max_retry_wait=max_retry_wait,
            default_headers=default_headers,
        )
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient()
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def send(self, request: Request) -> httpx.Response:
        """Send ``request``, retrying as ``RetryPolicy`` allows; a 2xx response or an error.

        With ``request.stream`` the 2xx response's body is left unread (the
        caller closes it); nothing is retried once that response arrived.
        """
        retries_done = 0
        while True:
            try:
                response = await self._http.send(self._build(self._http, request), stream=request.stream)
            except httpx.TransportError as error:
                delay = self.retry_policy.after_transport_error(
                    retries_done, request.method, error, idempotent=request.idempotent
                )
                if delay is None:
                    raise self.connection_error(error) from error
                log.info("nodai: %r on %s %s; retrying in %.2fs", error, request.method, request.path, delay)
            else:
                if response.is_success:
                    return response
                if request.stream:
                    try:
                        await response.aread()
                    except httpx.TransportError as error:
                        raise self.connection_error(error) from error
                    finally:
                        await response.aclose()
                delay = self._retry_delay_for(response, retries_done)
                if delay is None:
                    raise error_from_response(response)
                log.info(
                    "nodai: %d on %s %s; retrying in %.2fs",
                    response.status_code, request.method, request.path, delay,
                )
            await self._sleep(delay)
            retries_done += 1

    async def request(self, request: Request) -> Any:
        return self.decode(await self.send(request))

    async def request_text(self, request: Request) -> str:
        """The body of a 2xx response as text (a CSV report, say)."""
        return (await self.send(request)).text

    async def close(self) -> None:
        """Close the connection pool (not a ``http_client`` passed in: its owner closes it)."""
        if self._owns_http:
            await self._http.aclose()

    async def aclose(self) -> None:
        await self.close()

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

