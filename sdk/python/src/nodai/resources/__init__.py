"""One module per group of admin endpoints: ``keys``, ``customers``, ``workflows``,
``webhooks``, ``events`` (usage events) and ``usage`` (usage reports).

Each holds a sync class and its async twin, both thin: they shape the request
and parse the answer; sending, retrying and errors are ``nodai._base``.
"""

from .customers import AsyncCustomers, Customers
from .events import AsyncEvents, Events
from .keys import AsyncKeys, Keys
from .usage import AsyncUsageReports, UsageReports
from .webhooks import AsyncWebhooks, Webhooks
from .workflows import AsyncWorkflows, Workflows

__all__ = [
    "Keys",
    "AsyncKeys",
    "Customers",
    "AsyncCustomers",
    "Workflows",
    "AsyncWorkflows",
    "Webhooks",
    "AsyncWebhooks",
    "Events",
    "AsyncEvents",
    "UsageReports",
    "AsyncUsageReports",
]
