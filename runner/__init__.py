"""The run layer: what train.py, evaluate.py and ablate.py do, as importable functions.

- `runner.spec`: a run's arguments (Args), their parsing and --set overrides;
- `runner.folder`: `RunFolder`, the one place that writes and reads a run folder's files;
- `runner.factory`: one `EnvKind` per env, and the env and agent of a run;
- `runner.training`, `runner.evaluation`, `runner.ablation`: train one run, evaluate run folders,
  run a grid of them.

Layers, each importing only those below it: the scripts -> runner -> envs, agents, baselines ->
models, data, evaluation -> common.
"""
