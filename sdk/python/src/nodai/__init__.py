"""nodai: the Python client of the nodai API-key and usage-metering server.

``Nodai`` (and its asyncio twin ``AsyncNodai``) runs metered queries with an
API key and manages keys, customers, workflows and webhooks with the admin token.
``nodai.webhooks.verify`` checks the signed messages a webhook receiver gets.
Every failure is a ``NodaiError``; its subclasses name the ones callers handle.

``stream_workflow`` reads a query's output as server-sent events: ``Chunk``s,
then a ``Done`` with the cost and tokens.

A service that does the work itself checks keys with ``verify``, reports the
work with ``events.send([usage_event(...)])``, and reads every key's usage
with ``usage.query`` (or ``usage.query_csv``).
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
    Credits,
    Customer,
    DailyUsage,
    Delivery,
    Done,
    Grant,
    Granularity,
    HourlyUsage,
    IngestResult,
    Limit,
    LimitMetric,
    LimitParam,
    LimitStanding,
    LimitWindow,
    Money,
    NotGiven,
    QueryResult,
    RateLimit,
    ReachedLimit,
    RejectedEvent,
    StreamEvent,
    Usage,
    UsageEvent,
    UsageEventData,
    UsageGroup,
    UsageRow,
    Verification,
    Webhook,
    Workflow,
)
from ._pagination import AsyncPage, AsyncPager, Page
from ._streaming import AsyncQueryStream, QueryStream
from ._version import __version__
from .resources.events import usage_event
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
    "Grant",
    "Credits",
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
    "Verification",
    "LimitStanding",
    "UsageEvent",
    "UsageEventData",
    "usage_event",
    "IngestResult",
    "RejectedEvent",
    "UsageRow",
    "UsageGroup",
    "Granularity",
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
