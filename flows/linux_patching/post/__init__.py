"""The ``linux-qc-patching-post`` workflow: after the patch window, is every server on its
staged kernel with its agents up? Read-only on the servers."""
