"""bench/md_stability.py: a killed run takes its spawned MD workers with it (they would otherwise run on)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_to_the_parent_stops_its_pool_workers(tmp_path):
    """The parent waits in a spawn Pool as main() does; SIGTERM to it must leave none of its workers running."""
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import multiprocessing as mp
            import sys
            import time

            sys.path.insert(0, {str(BENCH)!r})
            from md_stability import exit_on_sigterm

            if __name__ == "__main__":
                exit_on_sigterm()
                with mp.get_context("spawn").Pool(2) as pool:
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
