"""The exporter: ConvNet graphs, layer-pattern specs, the classic architectures, summaries, ONNX
export and the model repository the server loads (see docs/DESIGN.md)."""
from .graph import Network, Node

EXPORTER_VERSION = "0.1.0"

__all__ = ["EXPORTER_VERSION", "Network", "Node"]
