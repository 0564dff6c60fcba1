"""The ``sft-fixer`` workflow: detect, install or reset the ScaleFT / Okta ASA agent, verify."""
