"""The two kinds of protocol error, by whose fault they are (as in h11)."""


class RemoteProtocolError(Exception):
    """The peer sent something we cannot accept.

    Carries the status code to answer a request with (RFC 3261 §21.4); a
    malformed response is dropped and logged instead.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class LocalProtocolError(Exception):
    """We were asked to do something the protocol forbids: our own bug."""
