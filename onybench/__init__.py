"""onybench: load-test and benchmark streaming LLM APIs with exact figures."""

__version__ = "0.1.0"
