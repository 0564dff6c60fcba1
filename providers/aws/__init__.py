"""The AWS provider: credentials, SSM Run Command, discovery."""
