"""``python -m flowpod ...``: the same command line as the ``flowpod`` console script."""

from flowpod._cli.main import main

if __name__ == "__main__":
    main(prog_name="flowpod")
