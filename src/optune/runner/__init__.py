"""The run's orchestration: one readable loop and what builds and checks it.

`prepare` checks everything before any work and builds the `Context` and the stages (the pair source, the
trainer) with what each uses; `loop` runs the iterations (its docstring is the algorithm); `heldout` is
step 6, the held-out reward and the policy's health (`health`: pure functions of responses and metrics);
`metrics` is the typed record of one iteration; `resume` decides what a resumed run may change; `tracking`
forwards metrics to W&B/TensorBoard. Nothing below this package imports it.
"""
