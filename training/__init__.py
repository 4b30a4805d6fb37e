"""Training ConvNets with the NumPy kernels: data sets, the training loop, optimizers, schedules.

Its own package rather than part of ``exporter``: the exporter turns a network and parameters into
ONNX and a model repository and needs none of this; training grows with every data set (readers,
augmentations, schedules) and depends on the exporter only to write its result. Neither the server
nor the exporter imports it, except ``exporter.defaults`` to build the trained defaults.
"""
