"""Specific exceptions whose messages tell the user what to do next."""


class PneumoniaError(Exception):
    """Base class: the CLI and the app show the message as one line, never a traceback."""


class DataError(PneumoniaError):
    """The data folder is missing, malformed, or holds no usable images."""


class ImageDecodeError(PneumoniaError):
    """The bytes are not an image we can read (corrupt, empty, or not a raster format)."""


class ModelError(PneumoniaError):
    """The saved model is missing, corrupt, or does not match its metadata."""
