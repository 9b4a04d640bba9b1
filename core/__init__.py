"""The base layer: settings, logging context and the vocabulary every other layer shares."""
