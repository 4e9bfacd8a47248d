"""Pipelines: the wiring. The only package that reads and writes files, loads config
and talks to MLflow. Each module is one stage (``validate``, ``demo_data``, ...), and
:mod:`pipelines.cli` is the ``healthscore`` command.
"""
