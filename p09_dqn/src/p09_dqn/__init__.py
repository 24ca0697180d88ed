"""p09_dqn: Deep Q-Network on gymnasium control tasks."""

__version__ = "0.1.0"
