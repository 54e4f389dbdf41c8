package eventlog

import (
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/sirupsen/logrus"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// syslogFacilities are the facility codes of syslog(3) by ZConfig's names.
var syslogFacilities = map[zconfig.SyslogFacility]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "security": 4,
	"syslog": 5, "lpr": 6, "news": 7, "uucp": 8, "cron": 9, "authpriv": 10,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20,
	"local5": 21, "local6": 22, "local7": 23,
}

// syslogSeverity is the syslog severity of an entry's level, as Python's
// SysLogHandler maps level names (debug 7 … critical 2). TRACE, which
// Python would send as a warning, is sent as debug.
func syslogSeverity(l logrus.Level) int {
	switch l {
	case logrus.PanicLevel, logrus.FatalLevel:
		return 2
	case logrus.ErrorLevel:
		return 3
	case logrus.WarnLevel:
		return 4
	case logrus.InfoLevel:
		return 6
	}
	return 7
}

// syslogWriter sends datagrams to a syslog daemon: over a Unix socket
// (datagram, or stream when the daemon listens so) or UDP. A failed send
// reconnects once and retries, as Python's handler does for Unix sockets.
type syslogWriter struct {
	mu      sync.Mutex
	network string
	addr    string
	conn    net.Conn
}

// dialSyslog connects to the daemon at a. A TCP address without a port
// means the syslog port, 514.
func dialSyslog(a zconfig.SocketAddress) (*syslogWriter, error) {
	w := &syslogWriter{network: "udp", addr: a.String()}
	if a.Network == "unix" {
		w.network = "unixgram"
	} else if a.Port == 0 {
		w.addr = net.JoinHostPort(a.Host, strconv.Itoa(stack.SyslogPort))
	}
	if err := w.connect(); err != nil {
		return nil, err
	}
	return w, nil
}

// connect (re)opens the connection with w.mu held or before w is shared.
func (w *syslogWriter) connect() error {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
	c, err := net.Dial(w.network, w.addr)
	if err != nil && w.network == "unixgram" {
		var serr error
		if c, serr = net.Dial("unix", w.addr); serr != nil {
			return err
		}
		w.network = "unix"
	} else if err != nil {
		return err
	}
	w.conn = c
	return nil
}

func (w *syslogWriter) send(msg []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		if _, err := w.conn.Write(msg); err == nil {
			return nil
		}
	}
	if err := w.connect(); err != nil {
		return err
	}
	_, err := w.conn.Write(msg)
	return err
}

func (w *syslogWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// syslogHandler is one <syslog>: entries at or above its Python level are
// formatted and sent as Python's SysLogHandler sends them: "<PRI>", the
// formatted line, and a NUL byte (no timestamp or host: the daemon adds
// them, and the format decides the rest).
type syslogHandler struct {
	w        *syslogWriter
	level    zconfig.LoggingLevel
	fmt      lineFormatter
	facility int
}

func (h *syslogHandler) Levels() []logrus.Level { return levelsFrom(h.level) }

func (h *syslogHandler) Fire(e *logrus.Entry) error {
	line, err := h.fmt.line(e)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("<%d>%s\x00", h.facility<<3|syslogSeverity(e.Level), line)
	return h.w.send([]byte(msg))
}
