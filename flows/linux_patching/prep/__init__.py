"""The ``linux-qc-patching-prep`` workflow: QC a change's Linux servers, group them by kernel,
stage the chosen kernel (``patchme.sh``), report."""
