"""Each route's access policy, declared on the route itself (a decorator), read by the gate.

A route without a declaration needs credentials: forgetting one fails closed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from flask import current_app, request

Access = Literal["public", "probe", "credentials"]
View = TypeVar("View", bound=Callable[..., object])
ATTRIBUTE = "connector_policy"


@dataclass(frozen=True)
class Policy:
    # public: no credentials (no data); probe: none needed, but credentials offered are checked
    # and earn details (a load balancer's probe has none); credentials: a Flex token, a Studio
    # signature or Basic auth.
    access: Access = "credentials"
    # Reads or writes one customer's data: limited per agent or flow, and audited.
    customer_data: bool = False
    # Answers a page's script: errors as HTML fragments rather than JSON.
    page: bool = False
    # The admin's (/admin, /metrics): a Flex token with the admin role, or the admin's Basic
    # credentials ([auth] admin_basic_auth_env); nothing else.
    admin: bool = False


DEFAULT = Policy()


def policy(
    access: Access = "credentials",
    *,
    customer_data: bool = False,
    page: bool = False,
    admin: bool = False,
) -> Callable[[View], View]:
    """Declare a view's policy: `@policy("public")`, `@policy(customer_data=True)`."""
    declared = Policy(access, customer_data, page, admin)

    def declare(view: View) -> View:
        setattr(view, ATTRIBUTE, declared)
        return view

    return declare


def current_policy() -> Policy:
    """The policy of the route handling the current request (the default for no route)."""
    view = current_app.view_functions.get(request.endpoint or "")
    found = getattr(view, ATTRIBUTE, DEFAULT)
    return found if isinstance(found, Policy) else DEFAULT
