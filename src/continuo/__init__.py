"""Continuo: the OpenAI Responses API, stateful, in front of any model."""

__version__ = "0.1.0"
