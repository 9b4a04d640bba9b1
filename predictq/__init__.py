"""predictq: queue-driven scoring service for the approved GLM_Model_26 model."""

__version__ = "0.1.0"
