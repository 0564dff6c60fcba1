"""Linux patching: the prep, patch window and post workflows, and what they share (kernel
versions, the QC report, the prep record, the post check)."""
