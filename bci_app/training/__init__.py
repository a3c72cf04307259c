"""``bci-app train``: the training of a model bundle.

==================  =========================================================================
module              what it holds
==================  =========================================================================
``command``         ``run_train``, the command line's entry point
``recipe``          ``train_bundle``: which stage trains what, on which trials, into which file
``loop``            ``FitLoop``: the one fit loop (seeding, accelerate, progress,
                    checkpoint/resume, early stopping) every stage runs through
``data``            P x K batches, caption targets, the images of one split
``encoder``         stage 1, f_theta (triplet loss)
``gan``             stage 2, the saliency GAN
``semantic``        stage 3, the semantic head M_s
``demo_refiner``    stage 4, the demo refiner's autoencoder and UNet
``classifier``      the image classifier that judges reconstructions
``pretrained``      a refiner or classifier referenced from another bundle
==================  =========================================================================

The settings are typed dataclasses in :mod:`bci_app.config` (``TrainConfig``).
"""
