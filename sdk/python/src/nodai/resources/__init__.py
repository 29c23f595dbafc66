"""One module per group of admin endpoints: ``keys``, ``customers``, ``workflows``, ``webhooks``.

Each holds a sync class and its async twin, both thin: they shape the request
and parse the answer; sending, retrying and errors are ``nodai._base``.
"""

from .customers import AsyncCustomers, Customers
from .keys import AsyncKeys, Keys
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
]
