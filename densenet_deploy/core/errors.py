"""One error hierarchy: the CLI maps DnxError to exit 2 and VerificationFailed to exit 1."""


class DnxError(Exception):
    """A user-facing error: bad input, bad usage, or an unusable environment (exit code 2)."""

    exit_code = 2


class UnknownModelError(DnxError):
    """A model name that is neither in the zoo nor valid under the name grammar."""


class CheckpointError(DnxError):
    """A checkpoint that cannot be read or does not fit the model."""


class MissingDependencyError(DnxError):
    """An optional package is not installed."""


class DataError(DnxError):
    """A data source that is empty, unreadable or of the wrong shape."""


class ArtifactError(DnxError):
    """A model artifact (ONNX, plan, IR) that is missing, corrupt or lacks dnx metadata."""


class BackendUnavailableError(DnxError):
    """A backend (TensorRT, CUDA, OpenVINO) that cannot be used on this machine."""


class OptionError(DnxError):
    """An option value the library refuses. It names the Python parameter (`batch_size`); the CLI shows the
    flag the user typed (`--batch-size`) instead, so library messages do not speak CLI."""

    def __init__(self, parameter: str, problem: str):
        super().__init__(f"{parameter} {problem}")
        self.parameter, self.problem = parameter, problem

    def for_flag(self, flag: str) -> str:
        return f"{flag} {self.problem}"


class VerificationFailed(DnxError):
    """A check ran and its result is below the threshold (exit code 1)."""

    exit_code = 1

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


def did_you_mean(name: str, choices) -> str:
    """A ' (did you mean X?)' suffix when a close match exists, else ''."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
