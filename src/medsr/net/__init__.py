"""Hospital networking: ``medsr listen`` (a DICOM Storage SCP that super-resolves what it
receives and sends the derived series on) and DICOMweb input/output for ``medsr upscale``.

Modules: ``spool`` (the durable on-disk spool and queue), ``dimse`` (destinations, C-STORE
sending), ``dicomweb`` (QIDO-RS/WADO-RS reading, STOW-RS storing, credentials from the
environment), ``listen`` (the node). pynetdicom and dicomweb-client are imported where used,
so ``import medsr.net`` imports neither. See docs/pacs.md.
"""
