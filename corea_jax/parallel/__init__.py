"""Meshes, shardings, multi-host start-up and the ahead-of-time fit check.

  sharding.py     make_mesh, the logical-axis rule table, global put / get helpers
  distributed.py  jax.distributed from flags or the environment (TPU pods, SLURM)
  aot.py          chips (HBM, peak FLOP/s, bandwidth), TPU topologies, compile-and-measure
  plan.py         `corea-jax plan`: a config's update and rollout compiled for a slice

Import the modules themselves (nothing is re-exported, so reading a mesh helper does not
load libtpu or the trainer).
"""
