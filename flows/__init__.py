"""Prefect flows of CloudOps: the workflows, the tasks they share, their scripts and parsers."""
