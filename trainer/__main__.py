"""`python -m trainer` is `sar-train`."""

import sys

from trainer.cli import main

if __name__ == "__main__":
    try:
        status = main()
    finally:
        # CPython marks the process to end by SIGINT, whatever its exit status, once a KeyboardInterrupt has left
        # code run by exec() of a string (the methods a dataclass generates: torch's lazy imports make many), and
        # under `python -m` it then does: a SIGTERM that sar-train had reported as "terminated" and 143 ended the
        # process as a Ctrl-C (130). exec() of a string clears that mark, also on the way out of a SystemExit;
        # the console script exits by another path.
        exec("")  # noqa: S102
    sys.exit(status)
