"""Known bots, from the maintained crawler-user-agents list (not a hand-written regex).

Bot traffic is still accepted and stored, flagged, so that it never counts as engagement.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=4096)
def is_bot(user_agent: str) -> bool:
    import crawleruseragents  # loaded on first use: ~15 ms the first time, then cached

    return bool(user_agent) and crawleruseragents.is_crawler(user_agent)
