"""``client.usage``: usage reports over every key (``GET /api/v1/usage``, admin token).

Rows are per UTC period (``hour``, ``day`` or ``month``) and, when asked,
per key, customer, workflow and status code; filters narrow them to one key,
customer or workflow. ``query`` answers typed rows, ``query_csv`` the same
report as CSV text. One key's or customer's own statistics stay where they
were: ``keys.usage`` and ``customers.usage``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence, Union

from .._base import AsyncAPIClient, Request, SyncAPIClient
from .._models import Granularity, UsageGroup, UsageRow, format_datetime

__all__ = ["UsageReports", "AsyncUsageReports"]

_PATH = "/api/v1/usage"
CSV = "text/csv"


def query_params(
    from_: Union[datetime, str, None],
    to: Union[datetime, str, None],
    granularity: Optional[Granularity],
    group_by: Union[Sequence[UsageGroup], str, None],
    key_id: Optional[str],
    customer_id: Optional[str],
    workflow_id: Optional[str],
) -> Dict[str, str]:
    params: Dict[str, str] = {}
    if from_ is not None:
        params["from"] = format_datetime(from_)
    if to is not None:
        params["to"] = format_datetime(to)
    if granularity is not None:
        params["granularity"] = granularity
    if group_by is not None:
        params["group_by"] = group_by if isinstance(group_by, str) else ",".join(group_by)
    for name, value in (("key_id", key_id), ("customer_id", customer_id), ("workflow_id", workflow_id)):
        if value is not None:
            params[name] = value
    return params


def _rows(body: Any) -> List[UsageRow]:
    return [UsageRow.from_json(row) for row in body.get("data") or []]


class UsageReports:
    def __init__(self, client: SyncAPIClient) -> None:
        self._client = client

    def query(
        self,
        *,
        from_: Union[datetime, str, None] = None,
        to: Union[datetime, str, None] = None,
        granularity: Optional[Granularity] = None,
        group_by: Union[Sequence[UsageGroup], str, None] = None,
        key_id: Optional[str] = None,
        customer_id: Optional[str] = None,
        workflow_id: Optional[str] = None,
    ) -> List[UsageRow]:
        """Usage per period (``granularity``: ``"hour"``, ``"day"``, the default,
        or ``"month"``, UTC) and per group (``group_by``: any of ``"key_id"``,
        ``"customer_id"``, ``"workflow_id"``, ``"status_code"``, in the order
        given), only for periods and groups with usage, sorted by start, then
        group. ``from_``/``to`` (default: the last 30 days) are rounded out to
        whole periods; hourly ranges span at most 90 days, others 1100.
        ``key_id``, ``customer_id`` and ``workflow_id`` keep only their usage.

        ``ValidationError`` (422) for a bad range or an unknown group;
        ``ServiceUnavailableError`` with code ``archive_unavailable`` from a
        replica that serves the API only.
        """
        params = query_params(from_, to, granularity, group_by, key_id, customer_id, workflow_id)
        return _rows(self._client.request(Request("GET", _PATH, params=params)))

    def query_csv(
        self,
        *,
        from_: Union[datetime, str, None] = None,
        to: Union[datetime, str, None] = None,
        granularity: Optional[Granularity] = None,
        group_by: Union[Sequence[UsageGroup], str, None] = None,
        key_id: Optional[str] = None,
        customer_id: Optional[str] = None,
        workflow_id: Optional[str] = None,
    ) -> str:
        """The report of ``query`` as CSV text (``Accept: text/csv``): a header
        ``start,end,<group fields in the order given>,requests,errors,cost,input_tokens,output_tokens``,
        then a line per row (``cost`` exact, e.g. ``0.012000``)."""
        params = query_params(from_, to, granularity, group_by, key_id, customer_id, workflow_id)
        return self._client.request_text(Request("GET", _PATH, params=params, accept=CSV))


class AsyncUsageReports:
    def __init__(self, client: AsyncAPIClient) -> None:
        self._client = client

    async def query(
        self,
        *,
        from_: Union[datetime, str, None] = None,
        to: Union[datetime, str, None] = None,
        granularity: Optional[Granularity] = None,
        group_by: Union[Sequence[UsageGroup], str, None] = None,
        key_id: Optional[str] = None,
        customer_id: Optional[str] = None,
        workflow_id: Optional[str] = None,
    ) -> List[UsageRow]:
        """Usage rows; see ``UsageReports.query``."""
        params = query_params(from_, to, granularity, group_by, key_id, customer_id, workflow_id)
        return _rows(await self._client.request(Request("GET", _PATH, params=params)))

    async def query_csv(
        self,
        *,
        from_: Union[datetime, str, None] = None,
        to: Union[datetime, str, None] = None,
        granularity: Optional[Granularity] = None,
        group_by: Union[Sequence[UsageGroup], str, None] = None,
        key_id: Optional[str] = None,
        customer_id: Optional[str] = None,
        workflow_id: Optional[str] = None,
    ) -> str:
        """The report as CSV text; see ``UsageReports.query_csv``."""
        params = query_params(from_, to, granularity, group_by, key_id, customer_id, workflow_id)
        return await self._client.request_text(Request("GET", _PATH, params=params, accept=CSV))
