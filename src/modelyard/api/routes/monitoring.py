"""Alerts (those firing, the recent changes, the webhook deliveries) and history."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from modelyard.api.deps import ServicesDep
from modelyard.api.policy import policy
from modelyard.monitoring.alert_types import Alert
from modelyard.monitoring.history import COARSE_S, FINE, RANGES
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


class SeriesList(BaseModel):
    series: list[str]


class History(BaseModel):
    range: str
    resolution_s: int  # 10 s-ish samples for an hour, 300 s averages beyond
    series: dict[str, list[tuple[int, float]]]  # name -> [[epoch seconds, value], ...]


@router.get("/api/history/series")
async def history_series(services: ServicesDep) -> SeriesList:
    return SeriesList(series=await asyncio.to_thread(services.history.store.names))


@router.get("/api/history")
async def history(
    services: ServicesDep,
    series: list[str] = Query(min_length=1, max_length=64, description="series names"),
    range: Literal["1h", "24h", "7d"] = Query(default="1h"),
) -> History:
    resolution, found = await asyncio.to_thread(services.history.store.read, series, RANGES[range])
    return History(
        range=range,
        resolution_s=int(services.settings.history_sample_s) if resolution == FINE else COARSE_S,
        series={name: [(p.ts, p.value) for p in points] for name, points in found.items()},
    )
