"""Prometheus metrics of the daemon, served by the search process on ``endpoints.metrics``.

The ingest process's counters (frames received per detector, rejections by
reason) travel with every block it sends (the block header's ``counters``),
so one endpoint shows the whole daemon.
"""

from __future__ import annotations

import logging

__all__ = ["Metrics"]

log = logging.getLogger(__name__)


class Metrics:
    """The daemon's metrics in their own registry; :meth:`serve` starts the HTTP endpoint."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        self.frames = Gauge("gwstream_frames_received", "frames received by ingest (total)", ["ifo"], registry=r)
        self.rejected = Gauge("gwstream_frames_rejected", "messages rejected by ingest (total)", ["reason"],
                              registry=r)
        self.blocks = Counter("gwstream_blocks", "aligned blocks analysed by search", registry=r)
        self.gaps = Counter("gwstream_gaps", "data gaps seen by search (conditioning restarted)", registry=r)
        self.windows = Counter("gwstream_windows", "windows scored (zero lag)", registry=r)
        self.batch = Histogram("gwstream_batch_windows", "windows per scored batch (block)",
                               buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 1024), registry=r)
        self.triggers = Counter("gwstream_triggers", "clustered zero-lag triggers", registry=r)
        self.alerts = Counter("gwstream_alerts", "alerts published", registry=r)
        self.lag = Gauge("gwstream_processing_lag_seconds",
                         "wall time from ingest completing a block to search finishing it", registry=r)
        self.block_seconds = Histogram("gwstream_block_processing_seconds", "search time per block",
                                       buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5), registry=r)
        self.latency = Histogram("gwstream_alert_latency_seconds", "frame complete -> alert published",
                                 buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1, 1.5, 2, 3, 5, 10), registry=r)
        self.background = Gauge("gwstream_background_livetime_seconds", "time-slid background live time",
                                registry=r)
        self.livetime = Gauge("gwstream_livetime_seconds", "zero-lag live time analysed", registry=r)

    def serve(self, hostport: str) -> bool:
        """Serve on ``host:port``; False (logged) when the port is taken."""
        from prometheus_client import start_http_server

        host, _, port = hostport.rpartition(":")
        try:
            start_http_server(int(port), addr=host, registry=self.registry)
        except OSError as exc:
            log.error("metrics endpoint %s unavailable (%s): metrics not served", hostport, exc)
            return False
        log.info("metrics on http://%s/metrics", hostport)
        return True

    def ingest_counters(self, counters: dict | None) -> None:
        """Mirror the ingest process's counters (from a block header)."""
        for key, value in (counters or {}).items():
            if key.startswith("frames."):
                self.frames.labels(key.split(".", 1)[1]).set(value)
            elif key.startswith("rejected."):
                self.rejected.labels(key.split(".", 1)[1]).set(value)
