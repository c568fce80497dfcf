"""FLoM reason codes (``FLOM_RC_*``), their texts, and the command's exit statuses."""

from __future__ import annotations

# Exit statuses of the ``flom`` command (FLOM_ES_*).
ES_OK = 0
ES_REQUESTER_CANT_WAIT = 96
ES_UNABLE_TO_EXECUTE_COMMAND = 97
ES_RESOURCE_BUSY = 98
ES_GENERIC_ERROR = 99

# Positive: warnings and information.
INACTIVE_FEATURE = 13
RESOURCE_IS_NOT_TRANSACTIONAL = 12
API_IMMUTABLE_HANDLE = 11
ELEMENT_NAME_NOT_AVAILABLE = 10
NETWORK_TIMEOUT = 9
CONNECTION_CLOSED = 8
CONNECTION_REFUSED = 7
LOCK_IMPOSSIBLE = 6
LOCK_CANT_WAIT = 5
LOCK_BUSY = 4
LOCK_CANT_LOCK = 3
LOCK_WAIT_RESOURCE = 2
LOCK_ENQUEUED = 1
OK = 0

# Negative: errors.
INTERNAL_ERROR = -1
DAEMON_NOT_STARTED = -2
NETWORK_EVENT_ERROR = -3
NULL_OBJECT = -4
INVALID_OPTION = -5
OBJ_CORRUPTED = -6
OUT_OF_RANGE = -7
INVALID_PREFIX_SIZE = -8
BUFFER_OVERFLOW = -9
INVALID_MSG_LENGTH = -10
INVALID_PROPERTY_VALUE = -11
CONTAINER_FULL = -12
PROTOCOL_ERROR = -13
INVALID_RESOURCE_NAME = -14
PROTOCOL_LEVEL_MISMATCH = -15
MSG_DESERIALIZE_ERROR = -16
API_INVALID_SEQUENCE = -17
NO_CERTIFICATE = -22
UNIQUE_ID_DOES_NOT_MATCH = -23
NO_TLS_CONNECTION = -24
INVALID_TIMESTAMP_FORMAT = -25
RESOURCE_INIT_ERROR = -26
CONNECTION_CLOSED_BY_SERVER = -27
OBJ_NOT_FOUND_ERROR = -28
# pyflom extension: the daemon is stopping and waits for its holders' commands to end
# (it grants nothing; the client waits for it to go, then starts a new one).
DAEMON_STOPPING = -40
# pyflom extension: a gateway's lock backend (etcd) did not answer in time.
BACKEND_UNAVAILABLE = -41
# pyflom extension: the daemon's access rules (--access-rules) do not allow the peer this
# request (to lock that resource, read the status or stop the daemon).
NOT_ALLOWED = -42
# pyflom library: the connection that held a lock ended (the daemon went away), so the
# lock may be someone else's already.
LOCK_LOST = -43
# pyflom library: a request would wait for a lock its own thread (or task) holds.
SELF_DEADLOCK = -44

# System-call failures, numbered in alphabetical order of the call from -100.
_SYSCALLS = [
    "accept",
    "bind",
    "chdir",
    "close",
    "closedir",
    "connect",
    "execvp",
    "fcntl",
    "flock",
    "fork",
    "getaddrinfo",
    "getifaddrs",
    "getnameinfo",
    "getsockname",
    "getsockopt",
    "gettimeofday",
    "inet_ntop",
    "listen",
    "localtime_r",
    "malloc",
    "open",
    "opendir",
    "pipe",
    "poll",
    "read",
    "realpath",
    "recv",
    "recvfrom",
    "regcomp",
    "regexec",
    "send",
    "sendto",
    "setsid",
    "setsockopt",
    "sigaction",
    "sigaddset",
    "sigemptyset",
    "signal",
    "sigprocmask",
    "socket",
    "snprintf",
    "unlink",
    "wait",
    "write",
]
SYSCALL_ERRORS = {name: -100 - i for i, name in enumerate(_SYSCALLS)}
CONNECT_ERROR = SYSCALL_ERRORS["connect"]  # -105
FLOCK_ERROR = SYSCALL_ERRORS["flock"]  # -108
RECV_ERROR = SYSCALL_ERRORS["recv"]  # -126
SEND_ERROR = SYSCALL_ERRORS["send"]  # -130
G_KEY_FILE_LOAD_FROM_FILE_ERROR = -203

# OpenSSL failures, -400 on, in FLoM's order.
_OPENSSL_CALLS = [
    "SSL_CTX_check_private_key",
    "SSL_CTX_load_verify_locations",
    "SSL_CTX_new",
    "SSL_CTX_use_certificate_file",
    "SSL_CTX_use_PrivateKey_file",
    "SSL_accept",
    "SSL_connect",
    "SSL_get_verify_result",
    "SSL_new",
    "SSL_read",
    "SSL_set_ex_data",
    "SSL_set_fd",
    "SSL_write",
]
OPENSSL_ERRORS = {name: -400 - i for i, name in enumerate(_OPENSSL_CALLS)}
TLS_NO_VALID_METHOD = -413

_TEXTS = {
    INACTIVE_FEATURE: "the feature is not active",
    RESOURCE_IS_NOT_TRANSACTIONAL: "the resource is not transactional",
    API_IMMUTABLE_HANDLE: "the property can not be changed in the current handle state",
    ELEMENT_NAME_NOT_AVAILABLE: "the locked element name is not available",
    NETWORK_TIMEOUT: "the network operation timed out",
    CONNECTION_CLOSED: "the connection was closed by the peer",
    CONNECTION_REFUSED: "the connection was refused",
    LOCK_IMPOSSIBLE: "the lock can never be granted (request exceeds the resource)",
    LOCK_CANT_WAIT: "the resource does not exist and the requester can not wait",
    LOCK_BUSY: "the resource is busy",
    LOCK_CANT_LOCK: "the resource can not be locked",
    LOCK_WAIT_RESOURCE: "waiting for the resource to be created",
    LOCK_ENQUEUED: "the lock request is queued",
    OK: "no error",
    INTERNAL_ERROR: "internal error",
    DAEMON_NOT_STARTED: "flom command was not able to start a new daemon and/or connect to it",
    NETWORK_EVENT_ERROR: "unexpected network event",
    NULL_OBJECT: "a null object was passed",
    INVALID_OPTION: "an invalid option was specified",
    OBJ_CORRUPTED: "an object is corrupted",
    OUT_OF_RANGE: "a value is out of range",
    INVALID_PREFIX_SIZE: "invalid message prefix size",
    BUFFER_OVERFLOW: "the process has been stopped to avoid a buffer overflow",
    INVALID_MSG_LENGTH: "invalid message length",
    INVALID_PROPERTY_VALUE: "invalid property value",
    CONTAINER_FULL: "the container is full and cannot store more elements",
    PROTOCOL_ERROR: "protocol error, unexpected message",
    INVALID_RESOURCE_NAME: "invalid resource name",
    PROTOCOL_LEVEL_MISMATCH: "the peer speaks a different protocol level",
    MSG_DESERIALIZE_ERROR: "the message could not be deserialized",
    API_INVALID_SEQUENCE: "the API functions were called in an invalid sequence",
    NO_CERTIFICATE: "the peer presented no X.509 certificate",
    UNIQUE_ID_DOES_NOT_MATCH: (
        "the unique ID sent by the peer does not match the CN field inside the X.509 "
        "provided certificate"
    ),
    NO_TLS_CONNECTION: "the connection is not a TLS connection",
    INVALID_TIMESTAMP_FORMAT: "invalid timestamp format",
    RESOURCE_INIT_ERROR: "the resource could not be initialized",
    CONNECTION_CLOSED_BY_SERVER: "the connection was closed by the server",
    OBJ_NOT_FOUND_ERROR: "object not found",
    DAEMON_STOPPING: "the daemon is stopping: it waits for its holders' commands to end",
    BACKEND_UNAVAILABLE: "the daemon's lock backend (etcd) did not answer in time",
    NOT_ALLOWED: "the daemon's access rules do not allow this request",
    LOCK_LOST: "the lock was lost: the connection to the daemon ended while it was held",
    SELF_DEADLOCK: "the request would wait for a lock held by its own thread or task",
    G_KEY_FILE_LOAD_FROM_FILE_ERROR: "'g_key_file_load_from_file' function returned an error",
    TLS_NO_VALID_METHOD: "no valid TLS method is available",
}


def strerror(rc: int) -> str:
    """Return FLoM's ``flom_strerror`` style text: ``SEVERITY: description``."""
    if rc == OK:
        return "OK: no error"
    severity = "ERROR" if rc < 0 else "INFO" if rc <= LOCK_IMPOSSIBLE else "WARNING"
    text = _TEXTS.get(rc)
    if text is None:
        for call, code in SYSCALL_ERRORS.items():
            if code == rc:
                text = f"'{call}' function returned an error condition"
                break
        else:
            text = next(
                (
                    f"'OpenSSL {call}' function returned an error"
                    for call, code in OPENSSL_ERRORS.items()
                    if code == rc
                ),
                "unknown return code",
            )
    return f"{severity}: {text}"
