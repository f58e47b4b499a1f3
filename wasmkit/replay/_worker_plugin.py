"""What the local cluster's worker processes do as they start (imports distributed)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from distributed import WorkerPlugin


class IgnoreInterrupts(WorkerPlugin):
    """The worker process ignores SIGINT: the submitting process decides."""

    def setup(self, worker: Any) -> None:
        """Called in each worker process as it starts (again after a restart)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            worker.loop.add_callback(signal.signal, signal.SIGINT, signal.SIG_IGN)
