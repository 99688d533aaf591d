"""nodeflow: a node-graph tool for Stable Diffusion image generation.

Importing this package is cheap: it imports neither torch nor dearpygui.
"""

__version__ = "0.1.0"
