package stack

import (
	"fmt"
	"sort"
	"time"

	"github.com/zeoraid/zeoraid/zconfig"
)

// Config is a zeo.conf, parsed and decoded: the server's <zeo> section,
// logging, and the storage sections, each of which becomes a Mount.
type Config struct {
	ZEO      ZEOOptions
	EventLog *EventLogOptions // nil when the file has no <eventlog>
	Runner   *RunnerOptions   // nil when the file has no <runner>
	// Storages are the storage sections, top level or inside <zeo>, by
	// storage name (an unnamed one is "1"), in file order.
	Storages []*zconfig.Section
	// Imports are the %import directives of the whole file.
	Imports []*zconfig.Import
	// Warnings are things accepted but ignored (a <runner> section, logging
	// handlers zeoraid does not implement), with positions.
	Warnings []string
}

// ZEOOptions is the <zeo> section (ZEO/server.xml, docs/configuration.md §2).
type ZEOOptions struct {
	Address                  zconfig.BindAddress     `zconfig:"address,required" doc:"where to listen: host:port, port, [v6]:port, or a unix socket path (contains /)"`
	ReadOnly                 bool                    `zconfig:"read-only" doc:"serve every storage read-only; writable registrations get ReadOnlyError (pack is still allowed)"`
	InvalidationQueueSize    int                     `zconfig:"invalidation-queue-size,default=100" doc:"recent transactions kept per storage for getInvalidations"`
	InvalidationAge          float64                 `zconfig:"invalidation-age" doc:"seconds: getInvalidations iterates the storage for clients younger than this when the queue is too short (0: off)"`
	TransactionTimeout       int                     `zconfig:"transaction-timeout" doc:"seconds a connection may hold the commit lock before it is disconnected (0: off)"`
	PidFilename              zconfig.ExistingDirPath `zconfig:"pid-filename" doc:"file that receives the server's pid while it runs"`
	ClientConflictResolution bool                    `zconfig:"client-conflict-resolution" doc:"accepted for compatibility: zeoraid always returns conflicts to the client for resolution"`
	Msgpack                  *bool                   `zconfig:"msgpack" doc:"announce M5 (msgpack) instead of Z5 (pickle); when absent, on iff $ZEO_MSGPACK is non-empty (runzeo's rule)"`
	SSL                      *SSLOptions             `zconfig:"ssl,section" doc:"TLS; client certificates are required"`
	AdminAddress             *zconfig.BindAddress    `zconfig:"admin-address" doc:"zeoraid: where the HTTP admin endpoint listens (/metrics, /healthz, /readyz, /status); absent: none (docs/operations.md)"`
	ManagementTrust          string                  `zconfig:"management-trust,default=loopback unix" doc:"zeoraid: connections that may make state-changing management calls (raid_disable, raid_recover, raid_reload): loopback, unix, networks (10.0.0.0/8), IP addresses, cert:CN=NAME, or any / none alone (docs/operations.md)"`
	// Storages receives storage sections written inside <zeo>, as the
	// original ZEORaid documentation did.
	Storages []*zconfig.Section `zconfig:"*"`
}

// SSLOptions is the server's <ssl> section.
type SSLOptions struct {
	Certificate      zconfig.ExistingDirPath `zconfig:"certificate,required" doc:"PEM certificate (may include the key)"`
	Key              zconfig.ExistingDirPath `zconfig:"key" doc:"PEM private key, if not inside the certificate file"`
	PasswordFunction string                  `zconfig:"password-function" doc:"Python callable returning the key password: not supported by zeoraid, refused"`
	Authenticate     string                  `zconfig:"authenticate,required" doc:"CA file or directory used to verify client certificates; DYNAMIC loads none"`
}

// EventLogOptions is <eventlog>, ZConfig's logger component: the root
// logger's level and its handlers. Every handler type ZConfig knows is
// decoded with its keys and datatypes; <logfile> and <syslog> are
// implemented, the others are accepted with a warning. Any other section
// inside <eventlog> (a storage, say) is an error.
type EventLogOptions struct {
	Level          zconfig.LoggingLevel    `zconfig:"level,default=info" doc:"critical, error, warn, info, blather, debug, trace, all, notset, or 0..50"`
	LogFiles       []*LogFileOptions       `zconfig:"logfile,section" doc:"a log file handler"`
	Syslogs        []*SyslogOptions        `zconfig:"syslog,section" doc:"a syslog handler"`
	EmailNotifiers []*EmailNotifierOptions `zconfig:"email-notifier,section" doc:"accepted, not implemented: warned"`
	HTTPLoggers    []*HTTPLoggerOptions    `zconfig:"http-logger,section" doc:"accepted, not implemented: warned"`
	Win32EventLogs []*Win32EventLogOptions `zconfig:"win32-eventlog,section" doc:"accepted, not implemented: warned"`
}

// LogHandlerOptions are the keys every handler has (ZConfig's
// base-log-handler). Formats are checked against Style when the
// configuration is decoded, as ZConfig checks them.
type LogHandlerOptions struct {
	Section         *zconfig.Section       `zconfig:",source"`
	Formatter       zconfig.DottedName     `zconfig:"formatter" doc:"Python formatter class: zeoraid always formats as logging.Formatter (another name is warned)"`
	DateFormat      string                 `zconfig:"dateformat,default=%Y-%m-%dT%H:%M:%S" doc:"strftime format of %(asctime)s"`
	Level           zconfig.LoggingLevel   `zconfig:"level,default=notset" doc:"minimum level of this handler"`
	Style           zconfig.LogFormatStyle `zconfig:"style,default=classic" doc:"classic (%(name)s), template or safe-template ($name); format ({name}) is not implemented"`
	ArbitraryFields bool                   `zconfig:"arbitrary-fields,default=false" doc:"allow fields other than a log record's in format"`
}

// LogFileOptions is a <logfile> handler.
type LogFileOptions struct {
	LogHandlerOptions
	Path     string                `zconfig:"path,required" doc:"file path, or STDOUT / STDERR (exactly so)"`
	Format   zconfig.EscapedString `zconfig:"format,default=------\\n%(asctime)s %(levelname)s %(name)s %(message)s" doc:"Python logging format"`
	MaxSize  zconfig.ByteSize      `zconfig:"max-size,default=0" doc:"size rotation: accepted, rotation is left to the system (logrotate and SIGUSR2); warned"`
	OldFiles int                   `zconfig:"old-files,default=0" doc:"rotated files kept; required by ZConfig with max-size, when or interval"`
	When     string                `zconfig:"when" doc:"time rotation: accepted, left to the system; warned"`
	Interval int                   `zconfig:"interval,default=0" doc:"time rotation interval: accepted, left to the system"`
	Encoding string                `zconfig:"encoding" doc:"accepted; logs are UTF-8"`
	Delay    bool                  `zconfig:"delay,default=false" doc:"accepted; the file is opened at start-up"`
}

// SyslogOptions is a <syslog> handler: lines go to a syslog daemon over a
// Unix datagram socket (address is a path, such as /dev/log) or UDP.
type SyslogOptions struct {
	LogHandlerOptions
	Facility zconfig.SyslogFacility `zconfig:"facility,default=user" doc:"syslog facility"`
	Address  zconfig.SocketAddress  `zconfig:"address,default=localhost:514" doc:"host:port (UDP) or a Unix socket path such as /dev/log"`
	Format   zconfig.EscapedString  `zconfig:"format,default=%(name)s %(message)s" doc:"Python logging format"`
}

// EmailNotifierOptions is an <email-notifier> handler (not implemented).
type EmailNotifierOptions struct {
	LogHandlerOptions
	From         string                `zconfig:"from,required"`
	To           []string              `zconfig:"to,required"`
	Subject      string                `zconfig:"subject,default=Message from Zope"`
	SMTPServer   zconfig.InetAddress   `zconfig:"smtp-server,default=localhost"`
	SMTPUsername string                `zconfig:"smtp-username"`
	SMTPPassword string                `zconfig:"smtp-password"`
	Format       zconfig.EscapedString `zconfig:"format,default=%(asctime)s %(levelname)s %(name)s %(message)s"`
}

// HTTPLoggerOptions is an <http-logger> handler (not implemented).
type HTTPLoggerOptions struct {
	LogHandlerOptions
	URL    zconfig.HTTPLoggerURL `zconfig:"url,default=http://localhost/"`
	Method zconfig.HTTPMethod    `zconfig:"method,default=GET"`
	Format zconfig.EscapedString `zconfig:"format,default=%(asctime)s %(levelname)s %(name)s %(message)s"`
}

// Win32EventLogOptions is a <win32-eventlog> handler (not implemented).
type Win32EventLogOptions struct {
	LogHandlerOptions
	AppName string                `zconfig:"appname,default=Zope"`
	Format  zconfig.EscapedString `zconfig:"format,default=%(levelname)s %(name)s %(message)s"`
}

// RunnerOptions is zdaemon's <runner>: parsed so configs stay valid,
// ignored by the server with a warning.
type RunnerOptions struct {
	Program              string             `zconfig:"program"`
	Python               string             `zconfig:"python"`
	Zdrun                string             `zconfig:"zdrun"`
	SocketName           string             `zconfig:"socket-name"`
	Daemon               string             `zconfig:"daemon"`
	Directory            string             `zconfig:"directory"`
	BackoffLimit         string             `zconfig:"backoff-limit"`
	Forever              string             `zconfig:"forever"`
	ExitCodes            string             `zconfig:"exit-codes"`
	StopTimeout          string             `zconfig:"stop-timeout"`
	User                 string             `zconfig:"user"`
	Umask                string             `zconfig:"umask"`
	HangAround           string             `zconfig:"hang-around"`
	DefaultToInteractive string             `zconfig:"default-to-interactive"`
	Logfile              string             `zconfig:"logfile"`
	Transcript           string             `zconfig:"transcript"`
	Prompt               string             `zconfig:"prompt"`
	Sections             []*zconfig.Section `zconfig:"*"`
}

// Trust returns management-trust parsed; DecodeConfig has checked it, so
// an error is only possible for options built by hand.
func (z *ZEOOptions) Trust() (ManagementTrust, error) {
	if z.ManagementTrust == "" {
		return ParseManagementTrust(DefaultManagementTrust)
	}
	return ParseManagementTrust(z.ManagementTrust)
}

// TransactionTimeoutDuration is transaction-timeout as a duration (0: off).
func (z *ZEOOptions) TransactionTimeoutDuration() time.Duration {
	return time.Duration(z.TransactionTimeout) * time.Second
}

// LoadConfig parses and decodes a zeo.conf. Every error found is returned
// in one zconfig.ErrorList, each positioned file:line:col.
func LoadConfig(path string) (*Config, error) {
	root, err := zconfig.ParseFile(path)
	if err != nil {
		return nil, err
	}
	return DecodeConfig(root)
}

// DecodeConfig turns a parsed zeo.conf into a Config, checking the top-level
// rules of ZEO's schema: exactly one <zeo>, at most one <eventlog> and
// <runner>, at least one storage, unique storage names. On error the
// returned Config is partial (its Storages are still filled in) so that
// validation can go on and report the storage sections' errors as well.
func DecodeConfig(root *zconfig.Section) (*Config, error) {
	var errs zconfig.ErrorList
	add := func(err error) {
		if err == nil {
			return
		}
		if l, ok := err.(zconfig.ErrorList); ok {
			errs = append(errs, l...)
		} else {
			errs = append(errs, &zconfig.Error{Pos: root.Pos, Msg: err.Error()})
		}
	}
	cfg := &Config{}
	var zeo, eventlog, runner *zconfig.Section
	for _, k := range root.Keys {
		errs = append(errs, &zconfig.Error{Pos: k.Pos, Msg: fmt.Sprintf("key %q is not allowed at the top level of zeo.conf", k.Name)})
	}
	collectImports(root, &cfg.Imports)
	for _, s := range root.Sections {
		switch s.Type {
		case "zeo":
			if zeo != nil {
				errs = append(errs, &zconfig.Error{Pos: s.Pos, Msg: fmt.Sprintf("only one <zeo> section is allowed (the first is at %s)", zeo.Pos)})
				continue
			}
			zeo = s
		case "eventlog":
			if eventlog != nil {
				errs = append(errs, &zconfig.Error{Pos: s.Pos, Msg: fmt.Sprintf("only one <eventlog> section is allowed (the first is at %s)", eventlog.Pos)})
				continue
			}
			eventlog = s
		case "runner":
			if runner != nil {
				errs = append(errs, &zconfig.Error{Pos: s.Pos, Msg: fmt.Sprintf("only one <runner> section is allowed (the first is at %s)", runner.Pos)})
				continue
			}
			runner = s
		case "logger":
			errs = append(errs, &zconfig.Error{Pos: s.Pos, Msg: "<logger> is not allowed at the top level of zeo.conf; use <eventlog>"})
		default:
			cfg.Storages = append(cfg.Storages, s)
		}
	}
	if zeo == nil {
		errs = append(errs, &zconfig.Error{Pos: root.Pos, Msg: "a <zeo> section is required"})
	} else {
		add(zconfig.Decode(zeo, &cfg.ZEO))
		if _, err := ParseManagementTrust(cfg.ZEO.ManagementTrust); err != nil {
			errs = append(errs, &zconfig.Error{Pos: keyPos(zeo, "management-trust"), Msg: err.Error()})
		}
		cfg.Storages = append(cfg.Storages, cfg.ZEO.Storages...)
		if cfg.ZEO.SSL != nil && cfg.ZEO.SSL.PasswordFunction != "" {
			errs = append(errs, &zconfig.Error{Pos: zeo.Pos, Msg: "<ssl> password-function names a Python callable, which zeoraid cannot call; use an unencrypted key file"})
		}
	}
	if eventlog != nil {
		// A storage section inside <eventlog> is a misplaced storage, not
		// an unknown handler: say where it belongs.
		handlers := *eventlog
		handlers.Sections = nil
		for _, s := range eventlog.Sections {
			if _, isStorage := Lookup(s.Type); isStorage {
				errs = append(errs, &zconfig.Error{Pos: s.Pos, Msg: fmt.Sprintf("<%s> is a storage section, not a log handler: storage sections go at the top level of zeo.conf", s.Type)})
				continue
			}
			handlers.Sections = append(handlers.Sections, s)
		}
		cfg.EventLog = &EventLogOptions{}
		if err := zconfig.Decode(&handlers, cfg.EventLog); err != nil {
			add(err)
		} else {
			w, err := checkEventLog(cfg.EventLog)
			cfg.Warnings = append(cfg.Warnings, w...)
			add(err)
		}
	}
	if runner != nil {
		cfg.Runner = &RunnerOptions{}
		add(zconfig.Decode(runner, cfg.Runner))
		cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("%s: <runner> is for zdaemon; zeoraid ignores it", runner.Pos))
	}
	errs = append(errs, checkStorageNames(cfg.Storages)...)
	if len(cfg.Storages) == 0 && zeo != nil {
		errs = append(errs, &zconfig.Error{Pos: root.Pos, Msg: "at least one storage section is required"})
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return posLess(errs[i].Pos, errs[j].Pos) })
		return cfg, errs
	}
	return cfg, nil
}

// StorageName is the name a storage section is mounted under: its section
// name, or "1" when unnamed (ZEO's rule).
func StorageName(s *zconfig.Section) string {
	if s.Name == "" {
		return "1"
	}
	return s.Name
}

func checkStorageNames(storages []*zconfig.Section) zconfig.ErrorList {
	var errs zconfig.ErrorList
	seen := map[string]*zconfig.Section{}
	var unnamed *zconfig.Section
	for _, s := range storages {
		if s.Name == "" {
			if unnamed != nil {
				errs = append(errs, &zconfig.Error{Pos: s.Pos, Msg: fmt.Sprintf("no more than one storage may be unnamed (the other is at %s)", unnamed.Pos)})
				continue
			}
			unnamed = s
		}
		name := StorageName(s)
		if prev, dup := seen[name]; dup {
			msg := fmt.Sprintf("storage name %q is used twice (first at %s)", name, prev.Pos)
			if s.Name == "" || prev.Name == "" {
				msg = fmt.Sprintf("can't have an unnamed storage and a storage named 1 (the other is at %s)", prev.Pos)
			}
			errs = append(errs, &zconfig.Error{Pos: s.Pos, Msg: msg})
			continue
		}
		seen[name] = s
	}
	return errs
}

func collectImports(s *zconfig.Section, into *[]*zconfig.Import) {
	*into = append(*into, s.Imports...)
	for _, c := range s.Sections {
		collectImports(c, into)
	}
}

func posLess(a, b zconfig.Pos) bool {
	if a.File != b.File {
		return a.File < b.File
	}
	if a.Line != b.Line {
		return a.Line < b.Line
	}
	return a.Col < b.Col
}
