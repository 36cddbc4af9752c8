"""Built-in workflows, benchmarks, model cards and recordings, shipped as package data.

Installed as ``flowfront.configs``; found with ``importlib.resources`` (flowfront.settings), so a
wheel finds them in site-packages and a checkout finds this folder.
"""
