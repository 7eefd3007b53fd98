"""GET /metrics: every metric for Prometheus to scrape, summed over all workers.

Unauthenticated like /healthz, for the scraper; not for the public: the nginx public
block does not route it, and it should only be reachable on the internal network.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from server import metrics


async def get_metrics(request: Request) -> Response:
    # Off the loop: a multiprocess scrape reads every worker's file.
    body = await asyncio.to_thread(metrics.exposition)
    return Response(
        body,
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )
