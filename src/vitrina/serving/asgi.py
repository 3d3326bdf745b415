"""The uvicorn entry point of each worker process: `vitrina serve run` passes the config file and
the command line's overrides through the environment, so every worker resolves the same settings."""

from __future__ import annotations

import json
import os

from fastapi import FastAPI

from vitrina.config import Config
from vitrina.serving.app import create_app

ENV_CONFIG = "VITRINA_SERVE_CONFIG"
ENV_OVERRIDES = "VITRINA_SERVE_OVERRIDES"


def create() -> FastAPI:
    overrides = json.loads(os.environ.get(ENV_OVERRIDES) or "{}")
    return create_app(Config.load(os.environ.get(ENV_CONFIG) or None, overrides))
