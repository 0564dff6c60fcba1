"""The ``run-script`` workflow: one script on many servers, and what each one did."""
