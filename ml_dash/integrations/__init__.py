"""Hooks for the frameworks training code already lives in. Import the one you use:

* ``ml_dash.integrations.lightning``: ``MlDashLogger``, a PyTorch Lightning ``Logger``
  (``ml_dash.integrations.pytorch_lightning`` for the ``pytorch_lightning`` package);
* ``ml_dash.integrations.transformers``: ``MlDashCallback``, a Hugging Face ``TrainerCallback``;
* ``ml_dash.integrations.keras``: ``MlDashCallback``, a Keras 3 ``Callback``.

Nothing here imports a framework until its module is imported; ``import ml_dash`` imports none.
"""
