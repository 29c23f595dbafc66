"""``Nodai`` and ``AsyncNodai``: configuration, the query call, and the admin resources."""

from __future__ import annotations

from typing import Any, Mapping, Optional

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
from ._models import QueryResult
from .resources import AsyncKeys, AsyncWebhooks, AsyncWorkflows, Keys, Webhooks, Workflows

__all__ = ["Nodai", "AsyncNodai"]


def _query_request(workflow_id: str, input: Any, api_key: Optional[str]) -> Request:
    return Request(
        "POST",
        f"/api/v1/workflows/{path_segment(workflow_id)}/query",
        body={"input": input},
        auth="key",
        api_key=api_key,
    )


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
    workflows: Workflows
    webhooks: Webhooks

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
        self.workflows = Workflows(self)
        self.webhooks = Webhooks(self)

    def query_workflow(
        self, workflow_id: str, input: Any, api_key: Optional[str] = None
    ) -> QueryResult:
        """Run one metered query of ``workflow_id`` with ``input`` (any JSON value).

        ``api_key`` overrides the client's key for this call. Raises a
        ``NodaiError`` subclass on failure: ``PermissionDeniedError``,
        ``RateLimitError``, ``CostLimitExceededError``, ``UpstreamError``, ...
        """
        response = self.send(_query_request(workflow_id, input, api_key))
        return QueryResult.from_json(self.decode(response), response.headers)


class AsyncNodai(AsyncAPIClient):
    """The asyncio twin of ``Nodai``: the same arguments, awaitable methods."""

    keys: AsyncKeys
    workflows: AsyncWorkflows
    webhooks: AsyncWebhooks

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
        self.workflows = AsyncWorkflows(self)
        self.webhooks = AsyncWebhooks(self)

    async def query_workflow(
        self, workflow_id: str, input: Any, api_key: Optional[str] = None
    ) -> QueryResult:
        """Run one metered query; see ``Nodai.query_workflow``."""
        response = await self.send(_query_request(workflow_id, input, api_key))
        return QueryResult.from_json(self.decode(response), response.headers)
