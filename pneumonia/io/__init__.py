"""Input and output: image and DICOM files (`images`), the data set on disk (`dataset`), and the model folder
(`bundle`: the model, its metadata, gate and predictions, loaded and checked once)."""
