"""Fixtures: one real ``nodai serve`` for the session, clients of it, fresh objects per test.

Tests share the server, so each creates its own keys and workflows under
unique ids and never asserts on global counts.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Callable, Iterator

import pytest

from _support import Receiver, ServerProcess, start_server, unique
from nodai import ApiKey, ConflictError, CreatedApiKey, Customer, Nodai, NotFoundError, Workflow

ECHO_PRICE = Decimal("0.002")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(tmp_path_factory.mktemp("nodai"))
    try:
        yield process
    finally:
        code = process.stop()
        # SPEC: SIGTERM finishes in-flight work and exits 0.
        assert code == 0, f"nodai exited with {code} after SIGTERM:\n{process.log()[-4000:]}"


@pytest.fixture
def admin(server: ServerProcess) -> Iterator[Nodai]:
    with Nodai(admin_token=server.admin_token, base_url=server.base_url) as client:
        yield client


@pytest.fixture
def echo_workflow(admin: Nodai) -> Iterator[Workflow]:
    """A ``builtin:echo`` workflow priced at 0.002 USD per query."""
    workflow = admin.workflows.create(
        unique("echo"), name="Echo", upstream_url="builtin:echo", price_per_request=ECHO_PRICE
    )
    yield workflow
    try:
        admin.workflows.delete(workflow.id)
    except NotFoundError:
        pass


@pytest.fixture
def make_key(admin: Nodai) -> Iterator[Callable[..., CreatedApiKey]]:
    """Create keys with unique names; revoke them at the end (again is a no-op)."""
    created: list[ApiKey] = []

    def make(**fields: object) -> CreatedApiKey:
        key = admin.keys.create(str(fields.pop("name", unique("key"))), **fields)  # type: ignore[arg-type]
        created.append(key)
        return key

    yield make
    for key in created:
        try:
            admin.keys.revoke(key.id)
        except NotFoundError:
            pass


@pytest.fixture
def make_customer(admin: Nodai) -> Iterator[Callable[..., Customer]]:
    """Create customers with unique ids; delete them at the end where they have no live keys."""
    created: list[Customer] = []

    def make(**fields: object) -> Customer:
        customer_id = str(fields.pop("id", unique("cust")))
        name = str(fields.pop("name", customer_id))
        customer = admin.customers.create(customer_id, name=name, **fields)  # type: ignore[arg-type]
        created.append(customer)
        return customer

    yield make
    for customer in created:
        try:
            admin.customers.delete(customer.id)
        except (NotFoundError, ConflictError):
            pass  # deleted by the test, or its keys outlive it here: harmless on a test server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()
