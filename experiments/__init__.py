"""SVI experiment scripts, run as ``python -m experiments.NAME`` (each with ``--smoke``)."""
