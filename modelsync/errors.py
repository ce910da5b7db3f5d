"""The one exception tree of modelsync.

Shaped by what the caller can do about it:

- ``UsageError`` (exit code 2): the input is wrong — models.toml, models.lock,
  command-line arguments. Fix the input and run again.
- ``OperationalError`` (exit code 1): the input is fine but the world is not —
  the network, an integrity check, a stale lock, a missing file offline.

Every error carries a message (what was expected, what was found) and a hint
(what to do next); the CLI renders both in one place (``modelsync.cli.render``).
Standard-library only: the run-time imports this module.
"""

from __future__ import annotations


class ModelsyncError(Exception):
    """Root of every error modelsync raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Pickled as it is (a worker process sends its failures to the parent):
        # the default calls cls(*args), which subclasses with keyword-only
        # arguments (file=, key=) do not accept.
        return _rebuild, (type(self), self.args, self.__dict__)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


def _rebuild(cls: type[ModelsyncError], args: tuple, state: dict) -> ModelsyncError:  # type: ignore[type-arg]
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


# --------------------------------------------------------------------------
# Bad input: exit 2


class UsageError(ModelsyncError):
    """The user's input (a file or an argument) is wrong."""

    exit_code = 2


class ManifestError(UsageError, ValueError):
    """models.toml is broken; names the file, the line and the key."""

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.key = key
        where = f"{file}:{line}" if line else file
        if key:
            where = f"{where}: {key}"
        super().__init__(f"{where}: {message}", hint=hint)


class LockfileError(UsageError, ValueError):
    """models.lock cannot be read (broken, hand-edited, or from a newer modelsync)."""

    def __init__(self, message: str, *, file: str, key: str | None = None, hint: str | None = None):
        self.file = file
        self.key = key
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {message}", hint=hint)


class ProjectNotFoundError(UsageError, FileNotFoundError):
    """No models.toml / models.lock where one was looked for."""


class ModelNotFoundError(UsageError, KeyError):
    """A model name that the lock does not declare."""

    def __init__(self, name: str, known: list[str], *, where: str = "models.lock", hint: str | None = None) -> None:
        self.name = name
        self.known = known
        if hint is None:
            import difflib

            close = difflib.get_close_matches(name, known, n=1)
            if close:
                hint = f"did you mean {close[0]!r}?"
            elif known:
                hint = "declared models: " + ", ".join(sorted(known))
            else:
                hint = f"{where} declares no model; add one to models.toml and run `modelsync lock`"
        super().__init__(f"no model named {name!r} in {where}", hint=hint)

    def __str__(self) -> str:  # KeyError would quote the whole text otherwise
        return ModelsyncError.__str__(self)


# --------------------------------------------------------------------------
# The world is not as locked: exit 1


class OperationalError(ModelsyncError):
    """The input is fine, but doing the work failed."""


class NotSyncedError(OperationalError, FileNotFoundError):
    """A model is declared but not (or no longer) in the project's view."""

    def __str__(self) -> str:
        return ModelsyncError.__str__(self)


class StaleLockError(OperationalError):
    """models.lock no longer matches models.toml."""


class NetworkError(OperationalError):
    """A download failed after its retries."""


class SourceError(OperationalError):
    """An upstream (index, server, local file) does not hold what was asked for."""


class OfflineError(OperationalError):
    """Work needs the network but the network is off (--offline, MODELSYNC_OFFLINE)."""

    def __init__(self, message: str, *, missing: list[tuple[str, str, int]], hint: str | None = None):
        self.missing = missing  # (model, file, size)
        super().__init__(message, hint=hint)


class Mismatch:
    """One digest (or the size) that did not match what was expected.

    A plain class, not a dataclass: the run-time imports this module and
    ``dataclasses`` alone costs milliseconds of start-up.
    """

    __slots__ = ("algorithm", "expected", "found")

    def __init__(self, algorithm: str, expected: str, found: str) -> None:
        self.algorithm = algorithm  # "size", "blake3", "sha256"
        self.expected = expected
        self.found = found

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mismatch):
            return NotImplemented
        return (self.algorithm, self.expected, self.found) == (other.algorithm, other.expected, other.found)

    def __repr__(self) -> str:
        return f"Mismatch({self.algorithm!r}, {self.expected!r}, {self.found!r})"


class IntegrityError(OperationalError):
    """Bytes did not match their pinned size or digest; nothing of them was kept."""

    def __init__(self, mismatch: Mismatch, *, model: str = "", file: str = "", hint: str | None = None):
        self.mismatch = mismatch
        self.model = model
        self.file = file
        what = f"{model}/{file}" if model else (file or "download")
        message = (
            f"{mismatch.algorithm} mismatch for {what}\n"
            f"  expected: {mismatch.expected}\n"
            f"  found:    {mismatch.found}"
        )
        super().__init__(
            message,
            hint=hint
            or "the bytes were discarded; if the upstream really changed, re-pin with `modelsync lock --upgrade`",
        )

    def for_file(self, model: str, file: str) -> "IntegrityError":
        """The same mismatch, now naming the model and file it belongs to."""
        return IntegrityError(self.mismatch, model=model, file=file, hint=self.hint)


class ManyErrors(ModelsyncError):
    """Several independent failures (e.g. of several models at lock), all reported."""

    def __init__(self, errors: list[ModelsyncError]) -> None:
        self.errors = errors
        self.exit_code = max(error.exit_code for error in errors)
        text = "\n".join("- " + str(error).replace("\n", "\n  ") for error in errors)
        super().__init__(f"{len(errors)} errors:\n{text}")


class Interrupted(OperationalError):
    """The work was cancelled (``cancel=`` of the Python API, Ctrl-C); what finished is kept."""


class SyncFailed(OperationalError):
    """Some files could not be synced; carries each file's own error."""

    def __init__(self, failures: list[tuple[str, str, ModelsyncError]]) -> None:
        self.failures = failures  # (model, file, error)
        lines = [f"{len(failures)} file(s) could not be synced:"]
        for model, file, error in failures:
            lines.append(f"- {model}/{file}: " + str(error).replace("\n", "\n  "))
        super().__init__("\n".join(lines), hint="fix the cause and run `modelsync sync` again; what finished is kept")
