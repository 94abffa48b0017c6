"""Datasets for training and evaluation: ``prepare`` (manifest, slice store, cleaning,
subject-level splits), the PyTorch dataset with on-the-fly degradation, 2.5D neighbours and
the pairing of real LR and HR DICOM series. See ``docs/data.md``."""
