"""Paths of the repository for tests."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_for_images(executor, workflow, **run_options):
    """Run ``workflow`` with its SaveImage node turned into a PreviewImage (nothing written to the
    output folder) and return the images it shows: float32 (B, H, W, 3) in 0..1."""
    import numpy as np

    from nodeflow.engine.workflow import NodeInstance

    for node_id, node in list(workflow.nodes.items()):
        if node.type == "SaveImage":
            workflow.nodes[node_id] = NodeInstance(node_id, "PreviewImage")  # same input name: 'images'
    shown = []
    executor.run(workflow, on_event=lambda e: shown.append(e) if type(e).__name__ == "ImagesShown" else None,
                 **run_options)
    return np.asarray(shown[0].images, dtype=np.float32)
