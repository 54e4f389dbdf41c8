"""Check and apply log formats with ZConfig's own formatter factory.

Used by datatype_parity_test.go. Reads a JSON list of [format, style,
arbitrary_fields] on stdin; for each, ZConfig's FormatterFactory checks the
format as a configuration load does, and the formatter renders one fixed
record (the values are those of the Go test; asctime is "ASCTIME").
Prints one result per entry: {"ok": line}, {"error": message}, or
{"loaded": true} for a format accepted that the record cannot fill.
"""
import json
import logging
import sys

from ZConfig.components.logger import formatter


class Section:
    def __init__(self, fmt, style, arbitrary):
        self.format = fmt
        self.dateformat = "%Y"
        self.style = style
        self.formatter = None
        self.arbitrary_fields = arbitrary


def record():
    r = logging.LogRecord("zeoraid.main", logging.INFO, "", 0, "hello 'world'", (), None)
    r.__dict__.update(pathname="", filename="", module="", lineno=0, funcName="",
                      created=1700000000.25, msecs=250.0, relativeCreated=12.5,
                      thread=0, threadName="MainThread", processName="MainProcess",
                      process=4242, levelno=20)
    return r


def main():
    out = []
    for fmt, style, arbitrary in json.load(sys.stdin):
        try:
            f = formatter.FormatterFactory(Section(fmt, style, arbitrary))()
        except Exception as e:  # every refusal, whatever its class
            out.append({"error": "%s: %s" % (type(e).__name__, e)})
            continue
        f.formatTime = lambda rec, datefmt=None: "ASCTIME"
        try:
            out.append({"ok": f.format(record())})
        except Exception:
            # Accepted, but this record lacks an arbitrary field.
            out.append({"ok": None, "loaded": True})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
