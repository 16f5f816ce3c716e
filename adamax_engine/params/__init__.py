"""Parameters and where they live: ``Parameter``, group parsing, the registry of flat buffers."""
