"""Convert values with ZConfig's own datatypes and print the results as JSON.

Used by datatype_parity_test.go. Reads a JSON list of [datatype, value]
pairs on stdin and prints one result per pair: {"ok": repr-like string} or
{"error": message}. Results are normalised to the strings the Go test
builds from its own decoding: integers and floats by str()/repr(),
booleans as True/False, socket addresses as unix:PATH or tcp:HOST:PORT,
where a missing port (None) is 0 as in zeoraid.
"""
import json
import socket
import sys

import ZConfig.datatypes
from ZConfig.components.logger import datatypes as logger_datatypes
from ZConfig.components.logger import formatter, handlers

registry = ZConfig.datatypes.Registry()
extra = {
    "logging-level": logger_datatypes.logging_level,
    "syslog-facility": handlers.syslog_facility,
    "log-format-style": formatter.log_format_style,
    "escaped-string": formatter.escaped_string,
    "http-handler-url": handlers.http_handler_url,
    "get-or-post": handlers.get_or_post,
}


def normalise(datatype, v):
    if isinstance(v, ZConfig.datatypes.SocketAddress):
        if v.family == getattr(socket, "AF_UNIX", None):
            return "unix:" + v.address
        v = v.address
    if datatype in ("inet-address", "socket-address", "socket-binding-address",
                    "socket-connection-address"):
        host, port = v
        return "tcp:%s:%d" % (host, port or 0)
    if datatype == "http-handler-url":
        return "%s %s" % v
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (bool, int)):
        return str(v)
    return v


def main():
    out = []
    for datatype, value in json.load(sys.stdin):
        conv = extra.get(datatype) or registry.get(datatype)
        try:
            out.append({"ok": normalise(datatype, conv(value))})
        except Exception as e:  # every refusal, whatever its class
            out.append({"error": "%s: %s" % (type(e).__name__, e)})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
