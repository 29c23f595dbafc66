"""The exceptions the SDK raises: one base class, one subclass per way a caller reacts.

Every error from the server is RFC 9457 problem details with a stable ``code``;
``NodaiError`` carries it together with the HTTP status. This module builds
errors from responses; it does not decide about retries (``_retry`` does).
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Type

import httpx

from ._models import RateLimit, ReachedLimit
from ._retry import parse_retry_after

__all__ = [
    "NodaiError",
    "APIConnectionError",
    "APITimeoutError",
    "APIStatusError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "IdempotencyConflictError",
    "CostLimitExceededError",
    "InsufficientCreditsError",
    "RateLimitError",
    "ConcurrencyLimitError",
    "ValidationError",
    "UpstreamError",
    "ServiceUnavailableError",
    "InternalServerError",
    "WebhookVerificationError",
]


class NodaiError(Exception):
    """Base class of every error this SDK raises.

    ``status`` is the HTTP status (``None`` when no response arrived), ``code``
    the problem's stable machine field (``invalid_api_key``, ``rate_limited``,
    ...), ``detail`` its human sentence, ``request_id`` the server's request id
    when the response carried one (today's server sends it only on successful
    queries, so expect ``None``).
    """

    status: Optional[int]
    code: Optional[str]
    detail: Optional[str]
    request_id: Optional[str]

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        detail: Optional[str] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.detail = detail
        self.request_id = request_id

    def __str__(self) -> str:
        return self.message


class APIConnectionError(NodaiError):
    """No response: the server could not be reached, or the connection broke."""

    def __init__(self, message: str = "could not reach the nodai server") -> None:
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """No response within the client's timeout."""

    def __init__(self, message: str = "the request to the nodai server timed out") -> None:
        super().__init__(message)


class APIStatusError(NodaiError):
    """The server answered with a non-2xx status; the subclasses name the common ones."""

    status: int
    #: The problem's ``type`` and ``title`` (RFC 9457), when present.
    type: Optional[str]
    title: Optional[str]
    #: The whole decoded body (a dict for problem+json), or ``None`` if it was not JSON.
    body: Any
    headers: httpx.Headers

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: Optional[str],
        detail: Optional[str],
        request_id: Optional[str],
        type: Optional[str] = None,
        title: Optional[str] = None,
        body: Any = None,
        headers: Optional[httpx.Headers] = None,
    ) -> None:
        super().__init__(message, status=status, code=code, detail=detail, request_id=request_id)
        self.type = type
        self.title = title
        self.body = body
        self.headers = headers if headers is not None else httpx.Headers()


class ValidationError(APIStatusError):
    """400 (malformed JSON ``invalid_json``, a query string that does not parse
    ``invalid_query``, a path that is not UTF-8 ``invalid_path``), 413 (body over
    1 MiB, or a batch of more than 1000 usage events: ``payload_too_large``) or
    422 (invalid fields ``validation_error``; a usage event sent alone that is not
    valid: ``invalid_event``, ``unsupported_event_type``, ``key_not_found``,
    ``workflow_not_found``, ``time_out_of_range``, ``authorization_mismatch``)."""


class AuthenticationError(APIStatusError):
    """401: a missing or wrong admin token (``unauthorized``), or no API key (``missing_api_key``)."""


def _reached_limit(body: Any) -> Optional[ReachedLimit]:
    return ReachedLimit.from_json(body.get("limit")) if isinstance(body, dict) else None


class CostLimitExceededError(APIStatusError):
    """402 ``cost_limit_exceeded``: a cost limit (per day or month) of the key or of its
    customer is reached. ``limit`` names it (``limit.scope`` is ``key`` or ``customer``)."""

    #: The limit that refused the query, from the problem's ``limit``; ``None`` if absent.
    limit: Optional[ReachedLimit]

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.limit = _reached_limit(self.body)


class InsufficientCreditsError(CostLimitExceededError):
    """402 ``insufficient_credits``: the prepaid customer's credit balance is at or
    below zero. A ``CostLimitExceededError`` too, so code that handles every 402
    keeps doing so; ``limit`` is ``None``."""


class PermissionDeniedError(APIStatusError):
    """403: ``code`` says why (``invalid_api_key``, ``key_inactive``, ``key_expired``,
    ``workflow_not_allowed``, ``origin_not_allowed``)."""


class NotFoundError(APIStatusError):
    """404: ``workflow_not_found``, ``key_not_found``, ``customer_not_found``,
    ``grant_not_found``, ``webhook_not_found``, ..."""


class ConflictError(APIStatusError):
    """409: ``workflow_exists`` when a workflow id is taken, ``customer_exists`` when a
    customer id is, ``customer_has_keys`` when a customer with live keys is deleted,
    ``key_revoked`` when a revoked key is updated or rotated, ``conflict`` when another
    change landed first."""


class IdempotencyConflictError(ConflictError):
    """409 ``idempotency_conflict``: an ``Idempotency-Key`` already used with another body."""


class RateLimitError(APIStatusError):
    """429 ``rate_limited``: a requests or tokens limit of the key or of its customer is
    reached. ``limit`` names it (``limit.scope`` is ``key`` or ``customer``,
    ``limit.metric`` ``requests`` or ``tokens``). ``retry_after`` is the server's
    Retry-After in seconds; ``rate_limit`` the ``X-RateLimit-*`` state, if sent."""

    retry_after: Optional[float]
    rate_limit: Optional[RateLimit]
    #: The limit that refused the query, from the problem's ``limit``; ``None`` if absent.
    limit: Optional[ReachedLimit]

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = parse_retry_after(self.headers.get("retry-after"))
        self.rate_limit = RateLimit.from_headers(self.headers)
        self.limit = _reached_limit(self.body)


class ConcurrencyLimitError(RateLimitError):
    """429 ``concurrency_limited``: the key's or its customer's ``max_concurrent``
    queries are in flight. ``limit.metric`` is ``concurrent`` (no window);
    ``retry_after`` is short (a place frees when a query ends). A ``RateLimitError``
    too, so ``retry_on_rate_limit`` and ``except RateLimitError`` cover it."""


class UpstreamError(APIStatusError):
    """502 ``upstream_error`` or 504 ``upstream_timeout``: the workflow's upstream failed.

    The query was admitted and metered (cost 0 unless the upstream reported
    one), which is why the SDK never retries it.
    """


class InternalServerError(APIStatusError):
    """Any other 5xx (the server promises none; a proxy in between may send them)."""


class ServiceUnavailableError(APIStatusError):
    """503: ``metering_unavailable`` (nothing was served or metered), ``not_ready``, or
    ``archive_unavailable`` (a usage report from a replica that serves the API only)."""


class WebhookVerificationError(NodaiError):
    """A webhook message failed verification: bad or missing signature or headers,
    a timestamp outside the tolerance, or a body that is not JSON."""


_BY_STATUS: Dict[int, Type[APIStatusError]] = {
    400: ValidationError,
    401: AuthenticationError,
    402: CostLimitExceededError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: ValidationError,
    422: ValidationError,
    429: RateLimitError,
    502: UpstreamError,
    503: ServiceUnavailableError,
    504: UpstreamError,
}

#: Codes with a class of their own, a subclass of their status's class.
_BY_CODE: Dict[str, Type[APIStatusError]] = {
    "insufficient_credits": InsufficientCreditsError,
    "idempotency_conflict": IdempotencyConflictError,
    "concurrency_limited": ConcurrencyLimitError,
}


def _error_class(status: int, code: Optional[str]) -> Type[APIStatusError]:
    base = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    by_code = _BY_CODE.get(code or "")
    return by_code if by_code is not None and issubclass(by_code, base) else base


def error_from_response(response: httpx.Response) -> APIStatusError:
    """The exception for a non-2xx response, filled from its problem+json body."""
    status = response.status_code
    body: Any
    try:
        body = json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    problem: Dict[str, Any] = body if isinstance(body, dict) else {}

    def text(field: str) -> Optional[str]:
        value = problem.get(field)
        return value if isinstance(value, str) else None

    code = text("code")
    detail = text("detail")
    if detail is None and problem == {} and response.content:
        # Not problem+json (a proxy's HTML page, say): keep the start of it.
        detail = response.text[:500]
    request_id = text("request_id") or response.headers.get("x-request-id")
    title = text("title")

    message = f"{status}"
    if code:
        message += f" {code}"
    if detail:
        message += f": {detail}"
    elif title:
        message += f": {title}"

    cls = _error_class(status, code)
    error: APIStatusError = cls(
        message,
        status=status,
        code=code,
        detail=detail,
        request_id=request_id,
        type=text("type"),
        title=title,
        body=body,
        headers=response.headers,
    )
    return error


#: The status each of the server's problem codes is answered with; an ``event:
#: error`` in a stream carries only the code, and is raised as that status's class.
_STATUS_BY_CODE: Dict[str, int] = {
    "invalid_json": 400,
    "invalid_path": 400,
    "invalid_query": 400,
    "unauthorized": 401,
    "missing_api_key": 401,
    "cost_limit_exceeded": 402,
    "insufficient_credits": 402,
    "invalid_api_key": 403,
    "key_inactive": 403,
    "key_expired": 403,
    "workflow_not_allowed": 403,
    "origin_not_allowed": 403,
    "workflow_not_found": 404,
    "key_not_found": 404,
    "customer_not_found": 404,
    "grant_not_found": 404,
    "webhook_not_found": 404,
    "delivery_not_found": 404,
    "conflict": 409,
    "workflow_exists": 409,
    "key_revoked": 409,
    "customer_exists": 409,
    "customer_has_keys": 409,
    "idempotency_conflict": 409,
    "payload_too_large": 413,
    "validation_error": 422,
    "webhook_url_forbidden": 422,
    "rate_limited": 429,
    "concurrency_limited": 429,
    "internal_error": 500,
    "upstream_error": 502,
    "metering_unavailable": 503,
    "not_ready": 503,
    "upstream_timeout": 504,
}


def error_from_event(data: str, headers: httpx.Headers) -> APIStatusError:
    """The exception for a stream's ``event: error`` (``{"code","detail","request_id"}``).

    Its class and ``status`` are those the same problem has as a response
    (``upstream_error`` is an ``UpstreamError`` with status 502); an unknown
    ``upstream_*`` code is an ``UpstreamError`` too, any other an
    ``InternalServerError``: a stream fails only on the server's side.
    """
    body: Any
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    problem: Dict[str, Any] = body if isinstance(body, dict) else {}

    def text(field: str) -> Optional[str]:
        value = problem.get(field)
        return value if isinstance(value, str) else None

    code = text("code")
    detail = text("detail")
    if detail is None and problem == {}:
        detail = data[:500]
    status = _STATUS_BY_CODE.get(code or "")
    if status is None:
        status = 502 if code and code.startswith("upstream_") else 500
    cls = _error_class(status, code)
    message = f"the stream failed: {status} {code or 'error'}"
    if detail:
        message += f": {detail}"
    return cls(
        message,
        status=status,
        code=code,
        detail=detail,
        request_id=text("request_id"),
        body=body,
        headers=headers,
    )
