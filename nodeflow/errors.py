"""Errors nodeflow raises for users: each names the node, input or file it is about.

A ``NodeflowError`` is a user's mistake or a condition the user can fix; the CLI prints its
message on one line without a traceback. Anything else escaping a node is a bug and keeps its
traceback.
"""

from __future__ import annotations


class NodeflowError(Exception):
    """Base class of the errors reported to users without a traceback."""


class WorkflowFormatError(NodeflowError):
    """A workflow file that cannot be read (bad JSON, unknown format, dangling link...)."""


class UnknownNodeType(NodeflowError):
    """A workflow names a node type that no installed pack provides."""

    def __init__(self, type_id: str, node_id: str | None = None) -> None:
        where = f"node {node_id}: " if node_id is not None else ""
        super().__init__(f"{where}unknown node type {type_id!r} (is its node pack installed?)")
        self.type_id = type_id
        self.node_id = node_id


class NodeDeclarationError(NodeflowError):
    """A node declaration that does not match its function, or two packs claiming one id."""


class NodeInputError(NodeflowError):
    """A bad input value found while a node runs; the executor adds the node's id and type."""

    def __init__(self, input_name: str, message: str) -> None:
        super().__init__(f"input {input_name!r}: {message}")
        self.input_name = input_name
        self.message = message


class ValidationError(NodeflowError):
    """A workflow that cannot run; ``problems`` holds ``nodeflow.engine.validate.Problem`` records (or
    strings), each naming its node, node type and input; ``str()`` shows one line per problem."""

    def __init__(self, problems: list) -> None:
        super().__init__("workflow is not valid:\n  " + "\n  ".join(map(str, problems)))
        self.problems = list(problems)


class NodeError(NodeflowError):
    """A node failed while running; ``input_name`` is set when one input was at fault."""

    def __init__(self, node_id: str, node_type: str, message: str, input_name: str | None = None) -> None:
        super().__init__(f"node {node_id} ({node_type}): {message}")
        self.node_id = node_id
        self.node_type = node_type
        self.message = message
        self.input_name = input_name

    @property
    def is_bug(self) -> bool:
        """Whether the node failed unexpectedly (an exception that is neither a nodeflow error nor
        the system's answer, such as a full disk): a bug to report, not something the user fixes."""
        cause = self.__cause__
        return cause is not None and not isinstance(cause, (NodeflowError, OSError))


class ModelFileError(NodeflowError):
    """A model file that cannot be used: missing, corrupt, unsupported or unsafe."""


class Cancelled(NodeflowError):
    """The user stopped the run."""

    def __init__(self) -> None:
        super().__init__("cancelled")
