"""What the routes reach: one object on app.state, handed to them by FastAPI's Depends."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import Depends, Request

from ..config import ServeConfig
from ..dashboard import Timeline
from ..deployment import ModelRepository
from ..lifecycle import Lifecycle
from ..metrics import Metrics
from ..service import Service
from ..store import Store
from .auth import Auth


@dataclasses.dataclass
class Context:
    config: ServeConfig
    repo: ModelRepository
    service: Service
    life: Lifecycle
    metrics: Metrics
    timeline: Timeline
    store: Store
    auth: Auth


def context(request: Request) -> Context:
    return request.app.state.ctx


Ctx = Annotated[Context, Depends(context)]
