"""The NeRF talking-head engine: the parts every NeRF method composes (not a method itself: no ``spec.py``).

- ``hashgrid``: 2-D multiresolution hash grids and the tri-plane encoder (torch and tiny-cuda-nn backends), and the
  3-D hash grid;
- ``fields``: the tri-plane head field with audio/expression conditioning and region masks, spherical harmonics, MLPs;
- ``rendering``: torch-ngp's rays, occupancy grid, ray marching and compositing;
- ``audio``: audio front ends (mel, AVE, DeepSpeech/HuBERT feature slots) and the 8-frame audio attention;
- ``ave``: the audio-visual encoder and its trainer;
- ``model``: a head model (field + audio front end + occupancy grid) and frame rendering;
- ``training``: the trainer (stages, schedules, EMA, exact resume, checkpoints);
- ``torso``: the 2-D torso field and its trainer;
- ``data``: a prepared subject as training and rendering tensors;
- ``method``: train/render plumbing of a method built on the engine, and the resolution of its `auto` settings;
- ``speed``: `bench speed`.
- ``hashgrid3d``: torch-ngp's 3-D multiresolution hash grid (RAD-NeRF's ``gridencoder``) and its per-corner reference;
- ``pe_field``: AD-NeRF's audio-conditioned head NeRF with frequency positional encoding;
- ``region_attention``: ER-NeRF's region attention (audio and eye channel weights from the tri-plane features).

No module here imports a method. Each fast path sits beside a plain reference implementation that its tests compare
against.
"""
