"""Training ConvNets with the NumPy kernels: data sets, the training loop, optimizers, schedules.

Its own package above ``exporter``: the exporter turns a network and parameters into ONNX and a
model repository and needs none of this; training grows with every data set (readers,
augmentations, schedules) and depends on the exporter to write its result. ``python -m training``
trains a model (``train``) and builds the default repository (``defaults``, with its trained
models); neither the server nor the exporter imports it.
"""
