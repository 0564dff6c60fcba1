"""The ``validate-credentials`` workflow: who the flows act as in each environment, until when."""
