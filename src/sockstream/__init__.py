"""sockstream: the LispWorks COMM socket stream for Python.

One buffered, bidirectional stream over a TCP socket on which character and binary I/O both work,
with read timeouts that end in end-of-file, write timeouts that raise, TLS on either side, STARTTLS,
and waiting on many streams at once.
"""

from ._connect import open_tcp_stream as open_tcp_stream
from ._connect import open_unix_stream as open_unix_stream
from ._contexts import make_ssl_ctx as make_ssl_ctx
from ._elements import BASE_CHAR as BASE_CHAR
from ._elements import SIGNED_BYTE_8 as SIGNED_BYTE_8
from ._elements import UNSIGNED_BYTE_8 as UNSIGNED_BYTE_8
from ._errors import LineTooLongError as LineTooLongError
from ._errors import SocketCreateError as SocketCreateError
from ._errors import SocketError as SocketError
from ._errors import SocketIOError as SocketIOError
from ._errors import SSLFailure as SSLFailure
from ._errors import SSLHandshakeTimeout as SSLHandshakeTimeout
from ._errors import SSLTruncatedError as SSLTruncatedError
from ._errors import SSLVerificationError as SSLVerificationError
from ._errors import WriteTimeoutError as WriteTimeoutError

# Not in __all__ (as __version__): which implementation runs, not a name of the API.
from ._impl import ACCELERATED as ACCELERATED
from ._multiwait import wait_for_input_streams as wait_for_input_streams
from ._multiwait import (
    wait_for_input_streams_returning_first as wait_for_input_streams_returning_first,
)
from ._server import Server as Server
from ._server import serve as serve
from ._server import server_terminate as server_terminate
from ._server import start_up_server as start_up_server
from ._stream import SocketStream as SocketStream
from ._stream import attach_ssl as attach_ssl
from ._stream import detach_ssl as detach_ssl
from ._waiter import StreamWaiter as StreamWaiter

__version__ = "0.1.0"

__all__ = [
    "BASE_CHAR",
    "SIGNED_BYTE_8",
    "UNSIGNED_BYTE_8",
    "LineTooLongError",
    "SSLFailure",
    "SSLHandshakeTimeout",
    "SSLTruncatedError",
    "SSLVerificationError",
    "Server",
    "SocketCreateError",
    "SocketError",
    "SocketIOError",
    "SocketStream",
    "StreamWaiter",
    "WriteTimeoutError",
    "attach_ssl",
    "detach_ssl",
    "make_ssl_ctx",
    "open_tcp_stream",
    "open_unix_stream",
    "serve",
    "server_terminate",
    "start_up_server",
    "wait_for_input_streams",
    "wait_for_input_streams_returning_first",
]
