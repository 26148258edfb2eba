"""Loading: tell a checkpoint's kind by its bytes, load it safely, rebuild a model from a state dict, read the sample.

The first stage; it imports nothing from the later ones. Records: `loading.records`.
"""
