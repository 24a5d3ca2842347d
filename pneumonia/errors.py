"""The package's one exception hierarchy: specific exceptions whose messages tell the user what to do next.

The CLI prints any of them as one `error:` line with exit code 2; the app shows the message as a card's reason."""


class PneumoniaError(Exception):
    """Base class: the CLI and the app show the message as one line, never a traceback."""


class DataError(PneumoniaError):
    """The data folder is missing, malformed, or holds no usable images."""


class ImageDecodeError(PneumoniaError):
    """The bytes are not an image we can read (corrupt, empty, or not a raster format)."""


class ModelError(PneumoniaError):
    """The saved model is missing, corrupt, or does not match its metadata."""


class OutputError(PneumoniaError):
    """An output cannot be written where it was asked for, or would overwrite earlier results."""


class StudyError(PneumoniaError):
    """A reader-study request or analysis that cannot be met, in words a reader or teacher can act on."""
