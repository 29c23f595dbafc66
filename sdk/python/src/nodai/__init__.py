"""nodai: the Python client of the nodai API-key and usage-metering server.

``Nodai`` (and its asyncio twin ``AsyncNodai``) runs metered queries with an
API key and manages keys, customers, workflows and webhooks with the admin token.
``nodai.webhooks.verify`` checks the signed messages a webhook receiver gets.
Every failure is a ``NodaiError``; its subclasses name the ones callers handle.

``stream_workflow`` reads a query's output as server-sent events: ``Chunk``s,
then a ``Done`` with the cost and tokens.
"""

from . import webhooks
from ._client import AsyncNodai, Nodai
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ConcurrencyLimitError,
    ConflictError,
    CostLimitExceededError,
    IdempotencyConflictError,
    InsufficientCreditsError,
    InternalServerError,
    NodaiError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
    ValidationError,
    WebhookVerificationError,
)
from ._models import (
    NOT_GIVEN,
    ApiKey,
    Billing,
    Chunk,
    CreatedApiKey,
    Customer,
    DailyUsage,
    Delivery,
    Done,
    HourlyUsage,
    Limit,
    LimitMetric,
    LimitParam,
    LimitWindow,
    Money,
    NotGiven,
    QueryResult,
    RateLimit,
    ReachedLimit,
    StreamEvent,
    Usage,
    Webhook,
    Workflow,
)
from ._pagination import AsyncPage, AsyncPager, Page
from ._streaming import AsyncQueryStream, QueryStream
from ._version import __version__
from .resources.keys import KeyStatus

__all__ = [
    "Nodai",
    "AsyncNodai",
    "webhooks",
    "NOT_GIVEN",
    "NotGiven",
    "Money",
    "QueryResult",
    "QueryStream",
    "AsyncQueryStream",
    "StreamEvent",
    "Chunk",
    "Done",
    "RateLimit",
    "ApiKey",
    "CreatedApiKey",
    "KeyStatus",
    "Customer",
    "Billing",
    "Limit",
    "LimitMetric",
    "LimitWindow",
    "LimitParam",
    "ReachedLimit",
    "Usage",
    "HourlyUsage",
    "DailyUsage",
    "Workflow",
    "Webhook",
    "Delivery",
    "Page",
    "AsyncPage",
    "AsyncPager",
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
    "__version__",
]
