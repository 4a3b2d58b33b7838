"""The service container: every long-lived part of a running modelyard, built in one place.

Routes reach it through ``modelyard.api.deps.get_services``. Data flows one way:
route → service → provider / store → event bus → WebSocket and UI.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from modelyard.access.audit import AuditLog
from modelyard.access.keys import ApiKeys
from modelyard.access.limits import KeyLimiter
from modelyard.access.private_files import make_private_dir, remove_key_file, write_key_file
from modelyard.access.usage import UsageLog
from modelyard.chat.service import ChatService
from modelyard.config import Settings
from modelyard.downloads.manager import DownloadManager
from modelyard.events import EventBus
from modelyard.gateway.backend import CatalogBackend
from modelyard.gateway.keyed import KeyGate
from modelyard.gateway.policies import model_policy, scheduler_settings
from modelyard.gateway.reporting import ScheduleReporter
from modelyard.gateway.restarts import ScheduledRestarts
from modelyard.gateway.scheduler import Scheduler
from modelyard.gateway.service import Gateway
from modelyard.gateway.turns import ChatTurns
from modelyard.gguf.servers import GgufServers
from modelyard.metrics import Metrics
from modelyard.models.catalog import Catalog
from modelyard.models.lifecycle import Lifecycle
from modelyard.models.loading import ModelLoading
from modelyard.models.store import CatalogStore
from modelyard.monitoring.alerts import Alerts
from modelyard.monitoring.answers import AnswerTally
from modelyard.monitoring.history import HistorySampler, HistoryStore
from modelyard.monitoring.webhooks import Webhooks
from modelyard.runtimes.container_ops import ContainerOperations
from modelyard.runtimes.container_runtime import Runtimes
from modelyard.runtimes.containers import ContainerManager
from modelyard.runtimes.control import InstanceControl
from modelyard.runtimes.health import HealthChecker
from modelyard.runtimes.instance_service import InstanceService
from modelyard.runtimes.instances import InstanceRegistry
from modelyard.runtimes.log_files import LogKeeper, LogLimits
from modelyard.runtimes.restarts import Supervisor
from modelyard.store.db import Database

log = logging.getLogger("modelyard")


@dataclass
class Services:
    """Built in dependency order, each part handed what it uses: nothing is patched in later."""

    settings: Settings
    db: Database
    bus: EventBus
    metrics: Metrics
    instances: InstanceRegistry
    processes: Runtimes
    health: HealthChecker
    control: InstanceControl
    supervisor: Supervisor
    instance_service: InstanceService
    catalog: Catalog
    downloads: DownloadManager
    lifecycle: Lifecycle
    chat: ChatService
    api_keys: ApiKeys
    audit: AuditLog
    containers: ContainerOperations
    gateway: Gateway
    log_keeper: LogKeeper
    alerts: Alerts
    history: HistorySampler

    @classmethod
    def build(cls, settings: Settings) -> Services:
        make_private_dir(settings.data_dir, settings.trusted_group)
        make_private_dir(settings.run_dir)
        make_private_dir(settings.logs_dir)
        settings.resolved_models_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        db.migrate()
        bus = EventBus()
        metrics = Metrics()
        instances = InstanceRegistry(settings, db)
        containers = ContainerManager(
            settings.docker_host, settings.api_timeout_ms / 1000, settings.run_dir
        )
        processes = Runtimes(settings, instances, containers)
        health = HealthChecker(settings, instances, processes, bus, metrics)
        control = InstanceControl(settings, processes, health)
        supervisor = Supervisor(settings, instances, processes, health, control, bus, metrics)
        instance_service = InstanceService(instances, processes, health, control, bus)
        catalog = Catalog(settings, CatalogStore(db), bus, instances, processes)
        downloads = DownloadManager(settings, db, bus, metrics, instances)
        servers = GgufServers(settings, catalog, instance_service, control, processes, health)
        loading = ModelLoading(settings, catalog, servers, instances)
        # The scheduler is the one owner of what is loaded: the lifecycle's starts and stops
        # (Models page, CLI, chat, batches) and the gateway's requests all go through it.
        backend = CatalogBackend(settings, catalog, instances, servers, loading)
        reporter = ScheduleReporter(bus, metrics)
        scheduler = Scheduler(
            backend, scheduler_settings(settings), model_policy(settings), on_change=reporter
        )
        lifecycle = Lifecycle(settings, catalog, loading, scheduler, downloads)
        usage = UsageLog(db)
        gateway = Gateway(
            settings, catalog, backend, scheduler, bus, reporter, KeyGate(KeyLimiter(), usage)
        )
        # The restart policy's restarts of single-model servers are scheduler loads.
        scheduled = ScheduledRestarts(settings, catalog, loading, scheduler, control)
        supervisor.relauncher = instance_service.scheduled = scheduled
        chat = ChatService(
            settings,
            db,
            bus,
            metrics,
            instances,
            health,
            control,
            processes,
            starter=lifecycle.start_local,
            turns=ChatTurns(scheduler, backend, gateway.names, loading.http),  # as the gateway
        )
        services = cls(
            settings,
            db,
            bus,
            metrics,
            instances,
            processes,
            health,
            control,
            supervisor,
            instance_service,
            catalog,
            downloads,
            lifecycle,
            chat,
            ApiKeys(db, settings.api_key),
            AuditLog(db, settings.audit_retention_days, settings.audit_max_rows),
            ContainerOperations(instances, processes, control, health),
            gateway,
            LogKeeper(
                settings.logs_dir,
                LogLimits(
                    settings.log_max_bytes, settings.log_keep, settings.log_max_age_days * 86400
                ),
                settings.log_check_s,
            ),
            Alerts(settings, bus, Webhooks(settings), metrics),
            HistorySampler(settings, HistoryStore(db), health, metrics, AnswerTally(bus)),
        )
        bus.add_snapshot_source("providers", services._provider_snapshot)
        bus.add_snapshot_source("models", services._model_snapshot)
        return services

    def _provider_snapshot(self) -> list[dict[str, Any]]:
        return [self.health.as_json(s) for s in self.health.cached()]

    async def _model_snapshot(self) -> list[dict[str, Any]]:
        return [m.wire() for m in await asyncio.to_thread(self.catalog.active)]

    async def startup(self) -> None:
        settings = self.settings
        write_key_file(settings.cli_key_path, self.api_keys.cli_key, settings.trusted_group)
        self.api_keys.load()
        adopted = self.processes.adopt()
        for record in adopted:
            log.info("adopted %s (PID %s)", record.key, record.pid)
        self.history.start()
        self.alerts.start()  # before the supervisor: an exit at start is heard
        self.supervisor.start()
        self.log_keeper.start()
        if self.settings.monitor:
            self.health.start_monitor()
        self.gateway.start()
        await self.chat.startup()
        await self.catalog.start()
        await self.downloads.start()  # after the catalog, which follows download events

    async def shutdown(self) -> None:
        await self.gateway.aclose()
        await self.downloads.close()
        await self.chat.close()
        await self.lifecycle.close()
        await self.catalog.close()
        await self.log_keeper.close()
        await self.alerts.close()
        await self.history.close()
        await self.supervisor.close()
        await self.control.close()
        if self.settings.stop_managed_on_exit:
            await self.control.stop_all()
        await self.health.close()
        self.processes.containers.close()
        self.processes.close()
        await self.gateway.keys.usage.close()
        await self.api_keys.close()
        await self.audit.close()
        self.db.dispose()
        remove_key_file(self.settings.cli_key_path, self.api_keys.cli_key)
