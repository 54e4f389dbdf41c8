"""Run ZEO's runzeo and report the address its server listens on.

Arguments are runzeo's (-C FILE, -a ADDRESS, ...). Once the server has
bound its socket, the address it got (host:port, or the socket path) is
written to file descriptor 3, which is then closed; with port 0 in the
configuration this is the kernel's choice, so the caller learns a port
nobody else can hold. Everything else is ZEO.runzeo's own behaviour.
"""
import os
import sys

import ZEO.runzeo


class ReportingServer(ZEO.runzeo.ZEOServer):

    def create_server(self):
        super().create_server()
        addr = self.server.acceptor.addr
        if isinstance(addr, tuple):
            host, port = addr[:2]
            addr = ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
        with os.fdopen(3, "w") as report:
            report.write(addr + "\n")


options = ZEO.runzeo.ZEOOptions()
options.realize(sys.argv[1:])
ReportingServer(options).main()
