"""Workflow files: nodeflow's JSON, ComfyUI API and UI JSON, PNG metadata and A1111 parameters.

``load_workflow`` reads any of them."""

from nodeflow.formats.load import load_workflow, parse_workflow_data

__all__ = ["load_workflow", "parse_workflow_data"]
