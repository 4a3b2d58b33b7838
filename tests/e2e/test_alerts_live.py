"""Alerts in a real browser: a firing alert appears on whatever page is open and stays; its
resolution follows, live over the WebSocket."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from modelyard.monitoring.alert_types import Rule, Severity
from tests.support.app_server import RunningApp


def test_alerts_show_live(page: Page, modelyard: Callable[..., RunningApp]) -> None:
    app = modelyard([], monitor=False)
    page.goto(f"{app.url}/#/system")
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    alerts = app.services.alerts
    alerts.fire(Rule.DISK_LOW, "/srv/models", Severity.WARNING, "0.4 GiB free in /srv/models")
    firing = page.locator(".toast-error", has_text="Alert: 0.4 GiB free in /srv/models")
    expect(firing).to_be_visible()
    alerts.resolve(Rule.DISK_LOW, "/srv/models", "12 GiB free in /srv/models")
    expect(page.locator(".toast-success", has_text="Resolved: 12 GiB free")).to_be_visible()
    page.wait_for_timeout(500)
    expect(firing).to_be_visible()  # a firing alert stays until dismissed
