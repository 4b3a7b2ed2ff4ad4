"""Business time: Taipei's clock (UTC+8, no daylight saving), in which fiscal years, business dates and
deadlines are reckoned. Kept apart so that calendar code need not import the signature machinery."""

from __future__ import annotations

import datetime

TAIPEI = datetime.timezone(datetime.timedelta(hours=8), "Asia/Taipei")
