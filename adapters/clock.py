"""The one place that reads the wall clock; the core is always handed the time."""

from __future__ import annotations

import datetime

from gateway.business_time import TAIPEI


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def taipei_today() -> datetime.date:
    """Business dates (fiscal year, deadlines) are Taipei dates."""
    return utc_now().astimezone(TAIPEI).date()
