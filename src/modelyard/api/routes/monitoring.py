"""Alerts: those firing, the recent changes, and the webhook deliveries."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from modelyard.api.deps import ServicesDep
from modelyard.api.policy import policy
from modelyard.monitoring.alert_types import Alert
from modelyard.monitoring.webhooks import Delivery

router = APIRouter(tags=["monitoring"], dependencies=[policy()])


class AlertList(BaseModel):
    firing: list[Alert]
    recent: list[Alert]  # the last changes, newest first


class DeliveryList(BaseModel):
    deliveries: list[Delivery]  # newest first


@router.get("/api/alerts")
async def alerts(services: ServicesDep) -> AlertList:
    return AlertList(
        firing=list(services.alerts.firing.values()),
        recent=list(reversed(services.alerts.recent)),
    )


@router.get("/api/alerts/deliveries", dependencies=[policy(read="admin")])
async def deliveries(services: ServicesDep) -> DeliveryList:
    return DeliveryList(deliveries=list(reversed(services.alerts.webhooks.deliveries)))
