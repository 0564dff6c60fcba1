"""``linux-qc-patching-window``: the patch window between prep and post (see ``flow.py``)."""
