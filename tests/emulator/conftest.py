from tests.ssm_emulator.plugin import *  # noqa: F403
