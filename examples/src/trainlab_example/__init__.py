"""An example package of one's own for trainlab (see examples/README.md): scikit-learn's wine data as (x, y)
tensors, a small network for feature vectors, a training step with feature noise and label smoothing, a
callback, and the config folder that names them (trainlab_example/conf, reachable as pkg://trainlab_example.conf)."""
