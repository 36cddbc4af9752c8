"""Bringing the service up, reloading it, and keeping replicas on one generation.

Start-up connects the stores and loads the artifacts. When the store cannot be reached the
service still starts, answers ``/readyz`` with 503 naming the store (URL without its password),
says so in one log line, and keeps trying until the store answers.

A reload (``POST /admin/reload``, SIGHUP, or another replica's reload) builds a new
:class:`~service.state.ServiceState` beside the old one and swaps it in; requests in flight
finish on the old one. A reload that finds a served workflow's artifacts gone (its frontier or
its router) is refused and the previous generation stays, unless the caller asks for the
downgrade. Replicas share the served-request store, which holds the generation number: a reload
on one replica advances it, and every other replica (and worker) polls it and reloads too, so
each reports the same generation in ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from flowfront.errors import FlowfrontError, RoutingError, StoreError
from flowfront.service.errors import Starting
from flowfront.service.state import ServiceState, Shared, load_state

__all__ = ["Lifecycle"]

log = logging.getLogger("flowfront.service")


class Lifecycle:
    """The app's state over time: bring-up, reloads, the generation watch, shutdown."""

    def __init__(self, app: FastAPI, shared: Shared, workflows_dir: Path) -> None:
        self.app = app
        self.shared = shared
        self.workflows_dir = workflows_dir
        self.problem: str | None = "starting"
        self.lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._watch: asyncio.Task | None = None

    @property
    def state(self) -> ServiceState | None:
        state: ServiceState | None = self.app.state.service_state
        return state

    # -- bring-up -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Try once now (the usual case: ready when this returns); on a store error keep trying
        in the background. Any other error (a bad workflows folder) stops the start-up."""
        try:
            await self._bring_up()
        except StoreError as exc:
            self.problem = str(exc)
            log.error("not ready: %s; retrying until the store answers", exc)
            self.spawn(self._bring_up_forever(), "bring-up")

    async def _bring_up(self) -> None:
        await self.shared.open_stores()
        generation = await asyncio.to_thread(self.shared.served_store.ensure_generation)
        state = await load_state(self.shared, self.workflows_dir, generation)
        self.app.state.service_state = state
        self.shared.metrics.generation.set(generation)
        self.problem = None
        log.info(
            "serving %d workflows from %s (generation %d)", len(state.entries), self.workflows_dir, generation
        )
        if self.shared.settings.generation_poll_s > 0:
            self._watch = self.spawn(self._watch_generation(), "generation-watch")
        if self.shared.settings.drift_interval_s > 0:
            self.spawn(self._watch_drift(), "drift-watch")

    async def _bring_up_forever(self) -> None:
        pause = 0.5
        while True:
            await asyncio.sleep(pause)
            pause = min(5.0, pause * 2)
            try:
                await self._bring_up()
                log.info("ready: the store answers again")
                return
            except StoreError as exc:
                if str(exc) != self.problem:
                    log.error("not ready: %s", exc)
                self.problem = str(exc)

    # -- reloads --------------------------------------------------------------------------------
    async def reload(self, *, allow_downgrade: bool = False, announce: bool = True,
                     generation: int | None = None) -> ServiceState:
        """Load the artifacts again and swap them in (one reload at a time). ``announce``: advance
        the shared generation so the other replicas follow."""
        async with self.lock:
            old = self.state
            if old is None:
                raise Starting("the service is still starting", hint="retry when GET /readyz answers 200")
            new = await load_state(
                self.shared, self.workflows_dir, generation or old.generation + 1, strict=True
            )
            lost = _downgrades(old, new)
            if lost and not allow_downgrade:
                self.spawn(new.retire(), f"discard-generation-{new.generation}")
                raise RoutingError(
                    f"reload refused, the previous generation stays: {'; '.join(lost)}",
                    hint="restore the artifacts, or POST /admin/reload?allow_downgrade=true to "
                    "serve without them",
                )
            if announce:  # only a generation that loaded is announced to the other replicas
                new.generation = await asyncio.to_thread(self.shared.served_store.bump_generation)
            self.app.state.service_state = new
            self.shared.metrics.generation.set(new.generation)
            self.spawn(old.retire(), f"retire-generation-{old.generation}")
        log.info("reloaded artifacts: generation %d, %d workflows", new.generation, len(new.entries))
        return new

    async def _watch_generation(self) -> None:
        """Follow reloads made by other replicas (or workers) of the same served-request store."""
        while True:
            await asyncio.sleep(self.shared.settings.generation_poll_s)
            try:
                stored = await asyncio.to_thread(self.shared.served_store.generation)
            except StoreError as exc:
                log.warning("cannot read the served generation: %s", exc)
                continue
            state = self.state
            if state is None or stored <= state.generation or self.lock.locked():
                continue
            try:
                await self.reload(allow_downgrade=True, announce=False, generation=stored)
            except FlowfrontError as exc:  # invalid artifacts: keep serving the old ones, say why
                log.error("generation %d announced by another replica cannot be loaded here: %s", stored, exc)
                state.generation = stored  # do not retry every poll; the next reload tries again

    async def _watch_drift(self) -> None:
        """Measure drift per routed workflow every interval; gauges, and one log line per crossing."""
        s = self.shared.settings
        alarmed: dict[tuple[str, str], bool] = {}
        while True:
            await asyncio.sleep(s.drift_interval_s)
            state = self.state
            if state is None:
                continue
            for name, entry in state.entries.items():
                if entry.router is None:
                    continue
                try:
                    report = await asyncio.to_thread(self.measure_drift, name, entry)
                except FlowfrontError as exc:
                    log.warning("drift of %s not measured: %s", name, exc)
                    continue
                self._publish(name, report, alarmed)

    def measure_drift(self, name: str, entry: Any) -> dict[str, Any]:
        from flowfront.service.drift import DriftThresholds, drift_report

        s = self.shared.settings
        store = self.shared.served_store
        decisions = store.decisions(since=time.time() - s.drift_window_s, workflow=name)
        feedback = store.feedback(ids=[d.id for d in decisions]) if decisions else []
        mix = (entry.router.validation_metrics_ or {}).get("group_mix")
        return drift_report(
            decisions,
            feedback,
            mix,
            DriftThresholds(s.drift_psi, s.drift_ood_share, s.drift_ece, s.drift_latency_ratio),
        )

    def _publish(self, name: str, report: dict[str, Any], alarmed: dict[tuple[str, str], bool]) -> None:
        m = self.shared.metrics
        values = {"psi": report["mix"]["psi"], "ood_share": report["ood_share"],
                  "ece": report["calibration"]["ece"], "latency_ratio": report["latency_ratio_median"]}
        for measure, value in values.items():
            if value is not None:
                m.drift.labels(workflow=name, measure=measure).set(value)
        for measure, on in report["alarms"].items():
            m.drift_alarm.labels(workflow=name, measure=measure).set(1 if on else 0)
            if on != alarmed.get((name, measure), False):
                alarmed[name, measure] = on
                (log.warning if on else log.info)(
                    "drift %s %s for %s: %s over the last %d routed requests", measure,
                    "over its threshold" if on else "back under its threshold", name,
                    {k: v for k, v in values.items() if v is not None}, report["routed"])

    # -- tasks and shutdown ---------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        """Stop watching and bringing up; wait for old generations to retire."""
        for task in list(self._tasks):
            if task.get_name() in ("bring-up", "generation-watch", "drift-watch"):
                task.cancel()
        started = time.monotonic()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=max(0.1, 30 - (time.monotonic() - started)))


def _downgrades(old: ServiceState, new: ServiceState) -> list[str]:
    """What a new generation would silently stop serving: a workflow, a frontier, a router."""
    lost = []
    for name, before in old.entries.items():
        after = new.entries.get(name)
        if after is None:
            lost.append(f"workflow {name!r} is gone from the workflows folder")
        elif before.frontier is not None and after.frontier is None:
            lost.append(f"workflow {name!r} lost its frontier ({after.status})")
        elif before.router is not None and after.router is None:
            lost.append(f"workflow {name!r} lost its router ({after.router_problem})")
    return lost
