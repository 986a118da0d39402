"""The shared-encoder decoder bandit: the multi-armed-bandit VAE of reference 003 (Abecidan), no Ray.

One convolutional encoder q(z|x) feeds K candidate decoder heads (the bandit's arms), one
likelihood and the N(0, I) prior (Kingma & Welling 2014). For every minibatch a policy picks ONE
head; that head's β-VAE loss (distortion + β·rate, Higgins et al. 2017) trains the encoder and
that head only, and the reward is −(the head's distortion on that training batch), the
reference's −BCE. The reference judged arms by training batches alone; here every
``eval_every`` steps (and at every epoch end) all heads are also scored without gradient on one
fixed validation batch, so that regret is measured against validation quality:

    regret_t = val_distortion[chosen_t] − min_k val_distortion[k]   (latest scores; 0 before any)

All heads are scored on the *same* z samples (one encoder pass, one fixed-seed draw), a paired
comparison: the differences between heads are not blurred by sampling noise.

- ``model.py``: :class:`~trainables.shared_encoder.model.SharedEncoderVAE` (encoder + K heads)
- ``loop.py``: one epoch of per-minibatch pulls, the progress record and the epoch's metrics
- ``checkpoint.py``: the checkpoint format (weights, optimiser, policy, progress, RNG states)

The trial's settings are :class:`trainables.spec.SharedEncoderSpec`.
"""
