"""nodeflow's built-in node packs (installed as ``nodeflow_nodes``), one topic per module."""
