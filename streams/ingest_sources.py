"""Which sources ``foresight ingest`` polls, kept current while it runs.

- :class:`WatchedSources`: with ``--kube``, the ``prometheus: {query}`` signals of the
  PredictiveScalers in the API server, kept by a list + watch (the controller's
  :class:`~scaler.kube.informer.Informer`): a spec added, changed or deleted changes the
  sources without a restart.
- :class:`SourceSync`: makes an :class:`~streams.ingest.Ingestor` poll what is wanted. A
  new source's history is read and learnt first (in one background thread, so the others
  go on being polled), then it goes live after its history; a source no longer wanted
  stops at once. A source changes only by its query or step, and a changed one is a new
  source (a new query is a new series: :func:`scaler.spec.prometheus_series`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streams.ingest import Ingestor, Source, sources_from_specs

log = logging.getLogger("foresight.ingest")


class WatchedSources:
    """The sources the PredictiveScalers in ``namespaces`` (None: all) ask for, at ``step``.

    ``api_client`` is a ``kubernetes`` client (passed in); :meth:`start` lists (RBAC or CRD
    problems fail there) and watches until :meth:`stop`. An invalid spec asks for nothing
    (one log line); the controller reports it on the object.
    """

    def __init__(self, api_client: Any, step: float, namespaces: Sequence[str] | None = None) -> None:
        from scaler.kube.informer import Informer

        self.step = step
        self._lock = threading.RLock()
        self._by_key: dict[str, list[Source]] = {}
        self.informer = Informer(api_client, self._on_event, namespaces=namespaces, lock=self._lock)

    def start(self) -> None:
        self.informer.start()

    def stop(self) -> None:
        self.informer.stop()

    def _on_event(self, type_: str, key: str, obj: Mapping[str, Any]) -> None:
        from scaler.spec import ScalerSpec, SpecError

        if type_ == "DELETED":
            self._by_key.pop(key, None)
            return
        try:
            spec = ScalerSpec.from_manifest(obj)
        except SpecError as exc:
            if self._by_key.pop(key, None) is not None or type_ == "ADDED":
                log.warning("%s: not a usable PredictiveScaler, its prometheus signals are not "
                            "polled: %s", key, exc)
            return
        self._by_key[key] = sources_from_specs([spec], self.step)

    def sources(self) -> list[Source]:
        """Every wanted source, once per series (the first spec's, by namespace/name)."""
        with self._lock:
            out: dict[str, Source] = {}
            for key in sorted(self._by_key):
                for s in self._by_key[key]:
                    out.setdefault(s.series, s)
            return list(out.values())


class SourceSync:
    """Keeps ``ingestor`` polling the wanted sources; new ones are backfilled first.

    ``backfill(source)`` reads and sends a source's history and returns the time it
    reaches (live polling starts after it), or None: live from the current step (no
    history, or it could not be read); None for ``backfill`` itself: never any history.
    :meth:`apply` runs in the ingestor's thread, so only that thread changes what the
    ingestor polls; histories are read in one background thread, one source at a time.
    """

    def __init__(self, ingestor: Ingestor, backfill: Callable[[Source], float | None] | None,
                 stop: threading.Event) -> None:
        self.ingestor = ingestor
        self.backfill = backfill
        self.stop = stop
        self._todo: queue.Queue[Source] = queue.Queue()
        self._done: queue.Queue[tuple[Source, float | None]] = queue.Queue()
        #: series -> source whose history is being read
        self.pending: dict[str, Source] = {}
        self._thread: threading.Thread | None = None

    def start(self, sources: list[Source]) -> None:
        """Backfill ``sources`` here and now, one after the other (an error is raised: a bad
        query in the sources file is the command's error), then poll them."""
        for s in sources:
            end = self.backfill(s) if self.backfill is not None else None
            if self.stop.is_set():
                return
            self.ingestor.add(s, end)

    def apply(self, wanted: list[Source]) -> None:
        """Start, stop or replace sources so that ``wanted`` is what is (or will be) polled.
        Nothing changes while the ingestor is a standby (it is not the Lease holder)."""
        want = {s.series: s for s in wanted}
        while True:  # histories learnt: live from their end, if still wanted as they were
            try:
                s, end = self._done.get_nowait()
            except queue.Empty:
                break
            if self.pending.get(s.series) == s:
                del self.pending[s.series]
            if want.get(s.series) == s and not self.stop.is_set():
                self.ingestor.add(s, end)
                log.info("ingesting %s every %gs: %s", s.series, s.step, s.query)
        if not self.ingestor.leading():
            return
        for s in list(self.ingestor.sources):
            if want.get(s.series) != s:
                self.ingestor.remove(s.series)
                log.info("stopped ingesting %s: no source asks for %s any more", s.series, s.query)
        polled = {s.series: s for s in self.ingestor.sources}
        for series, s in want.items():
            if polled.get(series) == s or self.pending.get(series) == s:
                continue
            if self.backfill is None:
                self.ingestor.add(s)
                log.info("ingesting %s every %gs: %s", s.series, s.step, s.query)
                continue
            self.pending[series] = s
            self._todo.put(s)
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="ingest-backfill", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        assert self.backfill is not None
        while not self.stop.is_set():
            try:
                s = self._todo.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                end = self.backfill(s)
            except Exception as exc:  # noqa: BLE001 - one source's failure must not stop the others
                # (a bad query: live polling then logs and counts it at every step)
                log.warning("%s: history not read (%s: %s); it goes live without it", s.series,
                            getattr(exc, "reason", type(exc).__name__), exc)
                end = None
            self._done.put((s, end))

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=30)
