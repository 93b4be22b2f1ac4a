"""The parts of ``engine.engine.Engine``, one mixin class a module, over one typed base
that declares the state they share (``_base``, with the primitives every part calls:
emitting events, ending a model):

- ``_lifecycle``: the cleanup ladder run as the ``async with`` block ends, and the
  wall-clock budget;
- ``_restoring``: opening a run: the journal (a resumed run's models) and checkpoints;
- ``_submission``: the steps of ``submit``: checks, a place in the queue, acceptance;
- ``_running``: the runners, each model's attempts, and what a trial reports;
- ``_control``: pausing, resuming and interrupting a model;
- ``_unwrap``: telling cancellations from errors in the cleanup ladder.

``Engine`` itself (``engine/engine.py``) keeps the public face: the options, entering
and leaving the block, and every public method. Splitting by mixin adds no call: a
method of one part calls another's directly on ``self``, as before the split.
"""
