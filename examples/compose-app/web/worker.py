"""The worker: no published ports (meshctl inject leaves it alone); it stops at once on SIGTERM."""

import signal
import sys
import time

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("worker: idle", flush=True)
while True:
    time.sleep(3600)
