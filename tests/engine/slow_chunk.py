"""A decode chunk that records its worker's pid and then hangs (for the orphaned-worker test)."""
import os
import time


def slow_chunk(paths, channels, size):
    folder = os.environ["SLOW_CHUNK_PIDS"]
    with open(os.path.join(folder, str(os.getpid())), "w"):
        pass
    time.sleep(600)
