"""SVI experiment scripts: ``python -m experiments.NAME`` (each has ``main(argv)`` and ``--smoke``)."""
