"""The graph engine: the workflow model, graph walks, validation, the executor and its cache,
the run context and events, and the registry of node types. No torch, no file formats."""
