"""``cloudops``: the operator's command line around the flows.

Stored changes and their versions, a change's history and report built from the record store,
resuming a paused run with the same typed answer the Prefect UI form gives, and a check of a
worker's set-up (``cloudops doctor``). An entry point: it may use every workflow's records, and
no workflow imports it.
"""
