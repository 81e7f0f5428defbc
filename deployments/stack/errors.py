"""Why the launcher refused or failed, each naming the component (and port or file) concerned."""

from __future__ import annotations


class StackError(Exception):
    """Base of every launcher error; the CLI prints its message without a traceback."""


class MissingBinaryError(StackError):
    def __init__(self, binary: str, package: str, component: str) -> None:
        self.binary, self.package, self.component = binary, package, component
        super().__init__(
            f"{component}: `{binary}` is not installed. Install the Debian package: "
            f"`sudo apt-get install -y {package}` (as root: `apt-get install -y {package}`), "
            "or run `make system-deps` as root."
        )


class PortInUseError(StackError):
    def __init__(self, port: int, component: str, holder: str | None) -> None:
        self.port, self.component, self.holder = port, component, holder
        by = f" by {holder}" if holder else ""
        super().__init__(
            f"{component}: port {port} is already in use{by}. Stop that process or move "
            f"{component} to a free port with its LLMR_* setting; nothing was started."
        )


class ComponentFailedError(StackError):
    def __init__(self, component: str, reason: str, log_path: str, log_tail: str) -> None:
        self.component, self.reason, self.log_path = component, reason, log_path
        super().__init__(
            f"{component} did not come up: {reason}\n--- last lines of {log_path} ---\n{log_tail}"
        )


class DatabaseUnreachableError(StackError):
    """The PostgreSQL server a setting names cannot be reached or refuses the connection."""

    def __init__(self, setting: str, where: str, reason: str) -> None:
        self.setting = setting
        super().__init__(f"{setting}: cannot connect to PostgreSQL at {where}: {reason}; nothing was started")
