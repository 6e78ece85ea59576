"""What a batch shows while it runs, on stderr: its finished scenes counted against those it runs, and how far
each long scene is (the PROGRESS_TOPIC events its task sends, `tasks.scene_progress`).

On a terminal that is one bar whose postfix names the failures and each running scene's share of its tiles; in
a log file (stderr not a terminal) one line per finished scene and one per progress event, since the bar,
redrawn with carriage returns, was one line that named no scene until the batch ended; with -q nothing.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from .tasks import FAILED


def _finished_line(what: str, n: int, total: int, rec: dict) -> str:
    """One finished scene as a line of a log file: count, status, input, seconds, and the bpp or the error."""
    bpp = f", {rec['bpp']} bpp" if rec["bpp"] != "" else ""
    error = f": {rec['error']}" if rec["error"] else ""
    return f"{what} {n}/{total} to run: {rec['status']} {rec['input']} ({rec['seconds']} s{bpp}){error}"


class Display:
    """The progress of the scenes `inputs` names (task key -> input), those the batch runs: the header line
    (cli) has already said how many inputs failed or were skipped before running, so the count is of these.

    Progress events come on the client's event-loop thread (`on_event`, the handler of
    `Client.subscribe_topic`), finished scenes on the caller's (`finished`); one lock keeps the running scenes
    and the bar whole. An event of a scene that is not running (another batch's on a shared scheduler, one
    that came after its scene finished or after `close`) is ignored."""

    def __init__(self, what: str, inputs: dict[str, str], quiet: bool):
        from tqdm import tqdm  # noqa: PLC0415

        self._what = what
        self._inputs = dict(inputs)  # the scenes not finished, by task key
        self._running: dict[str, float] = {}  # share of its tiles, of a scene that has said
        self._total, self._done, self._failed = len(inputs), 0, 0
        self._lines = not quiet and not sys.stderr.isatty()
        self._bar = tqdm(total=len(inputs), desc=f"{what}s to run", unit="scene", file=sys.stderr,
                         disable=quiet or self._lines, dynamic_ncols=True)
        self._lock = threading.Lock()

    def on_event(self, event: tuple) -> None:
        """A PROGRESS_TOPIC event, (the scheduler's time, {"key", "fraction", "seconds"})."""
        _, msg = event
        key = msg.get("key")
        with self._lock:
            if key not in self._inputs:
                return
            self._running[key] = msg["fraction"]
            if self._lines:
                print(f"{self._what} running: {self._inputs[key]} ({msg['fraction']:.0%} of its tiles, "
                      f"{msg['seconds']} s)", file=sys.stderr, flush=True)
            else:
                self._bar.set_postfix_str(self._postfix())

    def finished(self, key: str, rec: dict) -> None:
        """The scene of task `key` has its record `rec`."""
        with self._lock:
            del self._inputs[key]
            self._running.pop(key, None)
            self._done += 1
            self._failed += rec["status"] == FAILED
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update()
            self._bar.refresh()  # update() draws at most every 0.1 s, and the scene's end must be seen
            if self._lines:
                print(_finished_line(self._what, self._done, self._total, rec), file=sys.stderr, flush=True)

    def _postfix(self) -> str:
        running = ", ".join(f"{Path(self._inputs[k]).name} {f:.0%}" for k, f in self._running.items())
        return f"failed={self._failed}" + (f", {running}" if running else "")

    def close(self) -> None:
        with self._lock:
            self._inputs.clear()
            self._bar.close()
