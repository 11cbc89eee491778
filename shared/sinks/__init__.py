"""Sinks: where records go. Each implements ``shared.ports.Sink``; the composition root picks one."""
