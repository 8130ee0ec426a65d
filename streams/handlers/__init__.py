"""Handlers (streams.runtime.Handler) that the Faust agents and the embedded log drive."""
