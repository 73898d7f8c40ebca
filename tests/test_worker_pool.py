"""transip_md.worker_pool: a killed parent takes its spawned workers with it (labelling, MD benches, MACE bench)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from transip_md.worker_pool import spawn_pool


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_to_the_parent_stops_its_pool_workers(tmp_path):
    """The parent waits in spawn_pool as the labellers and benches do; SIGTERM must leave none of its workers."""
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing as mp
            import time

            from transip_md.worker_pool import spawn_pool

            if __name__ == "__main__":
                with spawn_pool(2) as pool:
                    waiting = pool.map_async(time.sleep, [300, 300])
                    print(" ".join(str(p.pid) for p in mp.active_children()), flush=True)
                    waiting.get()
            """
        )
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
        time.sleep(1.0)  # the workers are inside time.sleep(300) now
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), f"workers {workers} outlived their killed parent"
    finally:
        parent.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_previous_sigterm_handler_comes_back_after_the_pool():
    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with spawn_pool(1) as pool:
            assert pool.apply(abs, (-3,)) == 3
            assert signal.getsignal(signal.SIGTERM) is not mine
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
