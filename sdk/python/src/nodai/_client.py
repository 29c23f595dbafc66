"""``Nodai`` and ``AsyncNodai``: configuration, the query calls, and the admin resources."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import httpx

from ._base import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_WAIT,
    DEFAULT_TIMEOUT,
    AsyncAPIClient,
    Request,
    SyncAPIClient,
    TimeoutTypes,
    path_segment,
)
from ._models import Money, QueryResult, Verification, money_to_json
from ._streaming import AsyncQueryStream, QueryStream
from .resources import (
    AsyncCustomers,
    AsyncEvents,
    AsyncKeys,
    AsyncUsageReports,
    AsyncWebhooks,
    AsyncWorkflows,
    Customers,
    Events,
    Keys,
    UsageReports,
    Webhooks,
    Workflows,
)

__all__ = ["Nodai", "AsyncNodai"]


def _query_request(
    workflow_id: str, input: Any, api_key: Optional[str], *, stream: bool = False
) -> Request:
    return Request(
        "POST",
        f"/api/v1/workflows/{path_segment(workflow_id)}/query",
        body={"input": input},
        auth="key",
        api_key=api_key,
        stream=stream,
    )


def _verify_request(
    key: str, workflow_id: Optional[str], hold: Optional[Money], hold_seconds: Optional[int]
) -> Request:
    body: Dict[str, Any] = {"key": key}
    if workflow_id is not None:
        body["workflow_id"] = workflow_id
    if hold is not None:
        body["hold"] = money_to_json(hold)
    if hold_seconds is not None:
        body["hold_seconds"] = hold_seconds
    return Request("POST", "/api/v1/verify", body=body)


class Nodai(SyncAPIClient):
    """A client of one nodai server.

    Arguments left out are read from ``NODAI_API_KEY``, ``NODAI_ADMIN_TOKEN`` and
    ``NODAI_BASE_URL`` (default ``http://127.0.0.1:8080``). The API key is sent
    only on queries, the admin token only on the admin endpoints.

    ``max_retries`` (default 2) bounds retries of what is safe to retry (see the
    README: 503s and connection failures; 429s only with
    ``retry_on_rate_limit=True``). A ``Retry-After`` longer than
    ``max_retry_wait`` seconds is not waited for: the error is raised at once.
    ``http_client`` lets you bring your own ``httpx.Client`` (proxies, TLS,
    transports); you then close it yourself.
    """

    keys: Keys
    customers: Customers
    workflows: Workflows
    webhooks: Webhooks
    #: Usage events of work done outside nodai (admin token).
    events: Events
    #: Usage reports over every key (admin token).
    usage: UsageReports

    def __init__(
        self,
        *,
        api_key: Optional[str] = None,
        admin_token: Optional[str] = None,
        base_url: Optional[str] = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_on_rate_limit: bool = False,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        default_headers: Optional[Mapping[str, str]] = None,
        http_client: Optional[httpx.Client] = None,
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
            http_client=http_client,
        )
        self.keys = Keys(self)
        self.customers = Customers(self)
        self.workflows = Workflows(self)
        self.webhooks = Webhooks(self)
        self.events = Events(self)
        self.usage = UsageReports(self)

    def query_workflow(
        self, workflow_id: str, input: Any, api_key: Optional[str] = None
    ) -> QueryResult:
        """Run one metered query of ``workflow_id`` with ``input`` (any JSON value).

        ``api_key`` overrides the client's key for this call. Raises a
        ``NodaiError`` subclass on failure: ``PermissionDeniedError``,
        ``RateLimitError`` (``ConcurrencyLimitError``), ``CostLimitExceededError``
        (``InsufficientCreditsError``), ``UpstreamError``, ... A refusal by a limit
        names it in the error's ``limit``.
        """
        response = self.send(_query_request(workflow_id, input, api_key))
        return QueryResult.from_json(self.decode(response), response.headers)

    def stream_workflow(
        self, workflow_id: str, input: Any, api_key: Optional[str] = None
    ) -> QueryStream:
        """Run one metered query and read its output as it is produced.

        ::

            with client.stream_workflow("echo", "hello streaming world") as stream:
                for event in stream:          # Chunk(text)..., then Done(cost, duration_ms, request_id, ...)
                    ...

        The request is sent when the ``with`` block is entered (or iteration
        starts); errors before the first event raise as ``query_workflow``'s
        do. An ``event: error`` after output raises the ``NodaiError``
        subclass of its code (``UpstreamError``, ``ServiceUnavailableError``,
        ...). Nothing is retried once the stream started. See ``QueryStream``.
        """
        return QueryStream(self, _query_request(workflow_id, input, api_key, stream=True))

    def verify(
        self,
        key: str,
        *,
        workflow_id: Optional[str] = None,
        hold: Optional[Money] = None,
        hold_seconds: Optional[int] = None,
    ) -> Verification:
        """Check an API key your own service was given, before doing the work
        yourself (admin token). Then report the work with
        ``events.send([usage_event(..., authorization_id=v.authorization_id)])``.

        Every verdict about the key is a ``Verification``, valid or not: check
        ``valid`` (and ``code``: ``invalid_api_key``, ``key_inactive``,
        ``key_expired``, ``workflow_not_found``, ``workflow_not_allowed``,
        ``rate_limited``, ``concurrency_limited``, ``cost_limit_exceeded``,
        ``insufficient_credits``). Only a bad request raises:
        ``ValidationError``, ``AuthenticationError``, ``ServiceUnavailableError``.

        A valid verification counts as a request against the key's and its
        customer's requests limits, and holds ``hold`` USD (default: the
        workflow's ``max_cost_per_request``, else its price; 0 without a
        workflow) against cost limits and prepaid credits until a usage event
        names its ``authorization_id``, or ``hold_seconds`` (1 to 86400,
        default 300) pass.
        """
        return Verification.from_json(
            self.request(_verify_request(key, workflow_id, hold, hold_seconds))
        )


class AsyncNodai(AsyncAPIClient):
    """The asyncio twin of ``Nodai``: the same arguments, awaitable methods."""

    keys: AsyncKeys
    customers: AsyncCustomers
    workflows: AsyncWorkflows
    webhooks: AsyncWebhooks
    events: AsyncEvents
    usage: AsyncUsageReports

    def __init__(
        self,
        *,
        api_key: Optional[str] = None,
        admin_token: Optional[str] = None,
        base_url: Optional[str] = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_on_rate_limit: bool = False,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        default_headers: Optional[Mapping[str, str]] = None,
        http_client: Optional[httpx.AsyncClient] = None,
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
            http_client=http_client,
        )
        self.keys = AsyncKeys(self)
        self.customers = AsyncCustomers(self)
        self.workflows = AsyncWorkflows(self)
        self.webhooks = AsyncWebhooks(self)
        self.events = AsyncEvents(self)
        self.usage = AsyncUsageReports(self)

    async def query_workflow(
        self, workflow_id: str, input: Any, api_key: Optional[str] = None
    ) -> QueryResult:
        """Run one metered query; see ``Nodai.query_workflow``."""
        response = await self.send(_query_request(workflow_id, input, api_key))
        return QueryResult.from_json(self.decode(response), response.headers)

    def stream_workflow(
        self, workflow_id: str, input: Any, api_key: Optional[str] = None
    ) -> AsyncQueryStream:
        """A streamed query (not a coroutine): ``async with`` or ``async for`` it.

        ::

            async with client.stream_workflow("echo", "hello streaming world") as stream:
                async for event in stream:
                    ...

        See ``Nodai.stream_workflow`` and ``AsyncQueryStream``.
        """
        return AsyncQueryStream(self, _query_request(workflow_id, input, api_key, stream=True))

    async def verify(
        self,
        key: str,
        *,
        workflow_id: Optional[str] = None,
        hold: Optional[Money] = None,
        hold_seconds: Optional[int] = None,
    ) -> Verification:
        """Check an API key; see ``Nodai.verify`` (a ``Verification``, valid or not)."""
        return Verification.from_json(
            await self.request(_verify_request(key, workflow_id, hold, hold_seconds))
        )
