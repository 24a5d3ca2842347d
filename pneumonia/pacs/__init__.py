"""A PACS round trip over DICOMweb: find CR/DX films not yet screened (QIDO-RS), fetch them (WADO-RS), put them
through the same reader, gate and model as the app, and store the results in the same study (STOW-RS) as a DICOM
Structured Report, and optionally a Secondary Capture of the Grad-CAM map.

Needs the optional extra `pip install .[pacs]` (dicomweb-client and highdicom, both MIT). The study's patient and
study identifiers travel into the objects written back, the one place they go: never into output, logs or files.
"""
