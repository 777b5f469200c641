"""The vendor simulators with the extra fault hooks the matrix needs (by page, listing or organisation),
on top of the base `Fault` injection (by request count, path, method or body)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from tests.simulators.base import SimRequest, SimResponse
from tests.simulators.keepnet import SEARCH_PATH, KeepnetSimulator
from tests.simulators.thousandeyes import TeOrg, ThousandEyesSimulator

# --- Keepnet -----------------------------------------------------------------------------------------

SearchHook = Callable[["HookedKeepnet", SimRequest, dict[str, Any]], None]
DataHook = Callable[["HookedKeepnet", SimRequest, dict[str, Any], dict[str, Any]], None]


def search_body(request: SimRequest) -> dict[str, Any]:
    body = request.json()
    return body if isinstance(body, dict) else {}


def page_of(request: SimRequest) -> int | None:
    number = search_body(request).get("pageNumber")
    return number if isinstance(number, int) else None


def main_listing(request: SimRequest) -> bool:
    """A search of the full listing (not the over-limit one)."""
    return request.path == SEARCH_PATH and search_body(request).get("isTargetUserCountExceededLimit") is False


def on_main_page(*numbers: int) -> Callable[[SimRequest], bool]:
    return lambda req: main_listing(req) and page_of(req) in numbers


class HookedKeepnet(KeepnetSimulator):
    """`before_search(sim, request, body)` runs before a search is answered (change the dataset mid-run);
    `after_search(sim, request, body, data)` may rewrite a successful page's `data` in place;
    `respond(request)` may answer a search itself (None: the normal answer)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.before_search: SearchHook | None = None
        self.after_search: DataHook | None = None
        self.respond: Callable[[SimRequest], SimResponse | None] | None = None
        self.hook_lock = threading.Lock()

    def _search(self, request: SimRequest) -> SimResponse:
        if self.respond is not None:
            answer = self.respond(request)
            if answer is not None:
                return answer
        body = search_body(request)
        if self.before_search is not None:
            with self.hook_lock:
                self.before_search(self, request, body)
        response = super()._search(request)
        if self.after_search is not None and response.status == 200 and isinstance(response.body, dict):
            data = response.body.get("data")
            if isinstance(data, dict):
                data["results"] = copy.deepcopy(data.get("results") or [])
                with self.hook_lock:
                    self.after_search(self, request, body, data)
        return response


# --- ThousandEyes ------------------------------------------------------------------------------------

UsageHook = Callable[[TeOrg, dict[str, Any]], None]
GroupsHook = Callable[[dict[str, Any]], None]


class HookedThousandEyes(ThousandEyesSimulator):
    """`usage_hook(org, body)` rewrites one organisation's usage answer in place; `groups_hook(body)` the
    account-groups answer."""

    usage_hook: UsageHook | None = None
    groups_hook: GroupsHook | None = None

    def usage_body(self, org: TeOrg, version: str, expand: set[str]) -> dict[str, Any]:
        body = copy.deepcopy(super().usage_body(org, version, expand))
        if self.usage_hook is not None:
            self.usage_hook(org, body)
        return body

    def account_groups_body(self, version: str, current_aid: str) -> dict[str, Any]:
        body = super().account_groups_body(version, current_aid)
        if self.groups_hook is not None:
            self.groups_hook(body)
        return body
