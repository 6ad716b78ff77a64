"""``python -m flowpod.pod ...``: the command a task pod runs (see ``flowpod.pod``)."""

from flowpod.pod import main

if __name__ == "__main__":
    raise SystemExit(main())
