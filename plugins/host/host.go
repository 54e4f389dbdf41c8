// Package host runs zeoraid's storage plugins: it finds their executables,
// starts them (one process per configured section), checks the protocol
// version in the handshake, registers the section types they advertise in
// the stack registry, and stands for each opened section as a
// stack.Storage that forwards every call over gRPC. It restarts a plugin
// that died, with backoff, and stops each one cleanly (its own Close
// first, then the process group). docs/plugins.md describes the behaviour.
package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/plugins/internal/wire"
	"github.com/zeoraid/zeoraid/plugins/proto"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// Options tune how plugin storages are run; the zero value is the
// default.
type Options struct {
	// CloseTimeout bounds a plugin storage's own Close before its process
	// is stopped (default 30s: a backend may flush a lot).
	CloseTimeout time.Duration
	// RestartMin and RestartMax bound the delay before a dead plugin is
	// started again; it doubles from RestartMin after each failed start
	// (defaults 100ms and 30s).
	RestartMin, RestartMax time.Duration
	// BlobCacheSize is how many bytes of blob files loaded from a plugin
	// the host keeps per node before it removes the least recently used
	// (default 1 GiB; the last one loaded is always kept).
	BlobCacheSize int64
	// TempDir is where each node's blob cache is made (default: the
	// system's temporary directory).
	TempDir string
	// AutoMTLS encrypts and authenticates the connection to each plugin
	// process with go-plugin's automatic mutual TLS. It is off by default:
	// the connection is a Unix socket in a directory only zeoraid's user
	// can enter (mode 0700), and TLS would cost every call its encryption.
	AutoMTLS bool
}

func (o Options) withDefaults() Options {
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 30 * time.Second
	}
	if o.RestartMin <= 0 {
		o.RestartMin = 100 * time.Millisecond
	}
	if o.RestartMax <= 0 {
		o.RestartMax = 30 * time.Second
	}
	if o.BlobCacheSize <= 0 {
		o.BlobCacheSize = 1 << 30
	}
	return o
}

// describeTimeout bounds the Describe call of a plugin.
const describeTimeout = 30 * time.Second

// Description is what a plugin says about itself.
type Description struct {
	Name    string // NAME of zeoraid-plugin-NAME
	Path    string
	Major   int
	Modules []ModuleDoc
}

// ModuleDoc is one section type a plugin implements.
type ModuleDoc struct {
	Type    string
	Aliases []string
	Doc     string
	Keys    []zconfig.KeyDoc
}

// Describe starts the plugin at path, asks for its section types and
// stops it again; nothing is opened.
func Describe(path string, log logrus.FieldLogger) (*Description, error) {
	if log == nil {
		log = quietLog()
	}
	p, err := startProcess(path, log.WithField("plugin", filepath.Base(path)), false)
	if err != nil {
		return nil, err
	}
	defer p.stop(0)
	ctx, cancel := context.WithTimeout(context.Background(), describeTimeout)
	defer cancel()
	r, err := p.rpc.Describe(ctx, &proto.DescribeRequest{})
	if err != nil {
		return nil, fmt.Errorf("plugin %s: describe: %w", path, wire.FromStatus(err))
	}
	d := &Description{Name: strings.TrimPrefix(filepath.Base(path), Prefix), Path: path, Major: int(r.GetMajor())}
	if d.Major != proto.Major {
		return nil, fmt.Errorf("%s speaks version %d of the zeoraid plugin protocol, this zeoraid speaks version %d", path, d.Major, proto.Major)
	}
	for _, m := range r.GetModules() {
		d.Modules = append(d.Modules, ModuleDoc{Type: m.GetType(), Aliases: m.GetAliases(), Doc: m.GetDoc(), Keys: wire.KeyDocsFrom(m.GetKeys())})
	}
	return d, nil
}

// quietLog is a logger that drops everything.
func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.PanicLevel)
	return l
}

// Host loads plugins for a zeoraid command. Its Import method is the
// stack.ImportHandler that `%import NAME` calls.
type Host struct {
	log  logrus.FieldLogger
	opts Options
}

// New returns a host that logs to log (nil: nowhere).
func New(log logrus.FieldLogger, opts Options) *Host {
	if log == nil {
		log = quietLog()
	}
	return &Host{log: log, opts: opts.withDefaults()}
}

var (
	regMu sync.Mutex
	// loaded are the plugins whose types are registered, by path.
	loaded = map[string]*Description{}
	// byType is the plugin path registered for each section type and alias.
	byType = map[string]string{}
)

// Loaded returns the plugins loaded so far by any Host of this process.
func Loaded() []*Description {
	regMu.Lock()
	defer regMu.Unlock()
	out := make([]*Description, 0, len(loaded))
	for _, d := range loaded {
		out = append(out, d)
	}
	return out
}

// Import loads the plugin an %import names: finds zeoraid-plugin-NAME
// (SearchDirs, with the directory of the file the %import is in), asks it
// for its section types and registers them. Importing a plugin again is a
// no-op. The error says where it looked, or why the plugin was refused.
func (h *Host) Import(imp *zconfig.Import) error {
	path, err := Find(imp.Package, configDir(imp.Pos.File))
	if err != nil {
		return err
	}
	return h.Load(path)
}

// configDir is the directory of a configuration file, or "" when file is
// not one (the embedded default, the command line).
func configDir(file string) string {
	if fi, err := os.Stat(file); err == nil && fi.Mode().IsRegular() {
		return filepath.Dir(file)
	}
	return ""
}

// Load registers the section types of the plugin executable at path.
func (h *Host) Load(path string) error {
	regMu.Lock()
	_, done := loaded[path]
	regMu.Unlock()
	if done {
		return nil
	}
	d, err := Describe(path, h.log)
	if err != nil {
		return err
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, done := loaded[path]; done {
		return nil
	}
	var mods []stack.Module
	for _, m := range d.Modules {
		for _, name := range append([]string{m.Type}, m.Aliases...) {
			if other, ok := byType[name]; ok {
				return fmt.Errorf("plugin %s offers <%s>, which plugin %s offers already", path, name, other)
			}
			if _, ok := stack.Lookup(name); ok {
				return fmt.Errorf("plugin %s offers <%s>, which zeoraid has built in", path, name)
			}
		}
		typ, err := optionsType(m.Keys)
		if err != nil {
			return fmt.Errorf("plugin %s: <%s>: %w", path, m.Type, err)
		}
		mods = append(mods, stack.Module{
			Type:    m.Type,
			Aliases: m.Aliases,
			Doc:     strings.TrimSpace(m.Doc + fmt.Sprintf(" (plugin %s)", path)),
			Options: reflect.New(typ).Interface(),
			Open:    h.opener(path),
			Check:   h.checker(path),
		})
	}
	for _, m := range mods {
		stack.Register(m)
		for _, name := range append([]string{m.Type}, m.Aliases...) {
			byType[name] = path
		}
	}
	loaded[path] = d
	return nil
}

// opener is the Open of a plugin's section types: a new plugin process
// for the node, given the section as configured.
func (h *Host) opener(path string) func(context.Context, *stack.Node, any) (stack.Storage, error) {
	return func(ctx context.Context, n *stack.Node, opts any) (stack.Storage, error) {
		sec := sourceOf(opts)
		if sec == nil {
			return nil, errors.New("plugin section without its source (a bug)")
		}
		return Open(ctx, path, n, sec, h.opts)
	}
}

// checker is the Check of a plugin's section types: the plugin decodes
// the section as its Open would and runs its options' own checks (an
// OptionsValidator), opening nothing, so `zeoraid validate` reports them
// at their positions. It starts a process of the plugin for the purpose.
func (h *Host) checker(path string) func(any, int) error {
	return func(opts any, _ int) error {
		sec := sourceOf(opts)
		if sec == nil {
			return errors.New("plugin section without its source (a bug)")
		}
		return Check(path, sec, h.log)
	}
}

// Check asks the plugin at path whether section is valid, as its Open
// would decode and check it, without opening anything. The problems come
// back as a zconfig.ErrorList.
func Check(path string, section *zconfig.Section, log logrus.FieldLogger) error {
	if log == nil {
		log = quietLog()
	}
	p, err := startProcess(path, log.WithField("plugin", filepath.Base(path)), false)
	if err != nil {
		return err
	}
	defer p.stop(0)
	ctx, cancel := context.WithTimeout(context.Background(), describeTimeout)
	defer cancel()
	r, err := p.rpc.Check(ctx, &proto.CheckRequest{Section: wire.Section(section)})
	if err != nil {
		return fmt.Errorf("plugin %s: check: %w", path, wire.FromStatus(err))
	}
	if errs := wire.ConfigErrorsFrom(r.GetErrors()); errs != nil {
		return errs
	}
	return nil
}

// sourceOf returns the section an options struct made by optionsType was
// decoded from.
func sourceOf(opts any) *zconfig.Section {
	v := reflect.ValueOf(opts)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct || v.Elem().NumField() == 0 {
		return nil
	}
	s, _ := v.Elem().Field(0).Interface().(*zconfig.Section)
	return s
}

// optionsType rebuilds, from a plugin's description of its options, a
// struct type zconfig decodes the same way: the same keys with the same
// datatypes, defaults, requirements and docs, so the host checks a plugin
// section strictly (unknown keys with "did you mean", bad values at their
// position) without starting the plugin, and `zeoraid types` documents
// it. Its first field receives the section itself, which Open sends to
// the plugin. A subsection whose own keys are not described is taken
// undecoded; the plugin decodes it when it opens.
func optionsType(keys []zconfig.KeyDoc) (reflect.Type, error) {
	fields := []reflect.StructField{{
		Name: "Source", Type: reflect.TypeFor[*zconfig.Section](), Tag: `zconfig:",source"`,
	}}
	rest, err := slotFields(keys, "")
	if err != nil {
		return nil, err
	}
	return reflect.StructOf(append(fields, rest...)), nil
}

// slotFields makes the fields of the slots named prefix+NAME (NAME
// without "/").
func slotFields(keys []zconfig.KeyDoc, prefix string) ([]reflect.StructField, error) {
	var fields []reflect.StructField
	for _, k := range keys {
		if !strings.HasPrefix(k.Name, prefix) || strings.Contains(k.Name[len(prefix):], "/") {
			continue
		}
		name := k.Name[len(prefix):]
		opts := ""
		if k.Required {
			opts += ",required"
		}
		var typ reflect.Type
		switch {
		case k.Section && name == "*":
			typ = reflect.TypeFor[[]*zconfig.Section]()
			opts = ""
		case k.Section:
			opts += ",section"
			elem := reflect.TypeFor[zconfig.Section]()
			sub, err := slotFields(keys, k.Name+"/")
			if err != nil {
				return nil, err
			}
			if len(sub) > 0 {
				elem = reflect.StructOf(sub)
			}
			typ = reflect.PointerTo(elem)
			if k.Multi {
				typ = reflect.SliceOf(typ)
			}
		default:
			t, ok := zconfig.DatatypeType(k.Type)
			if !ok {
				return nil, fmt.Errorf("key %s has datatype %q, which this zeoraid does not know", k.Name, k.Type)
			}
			typ = t
			if k.Multi {
				typ = reflect.SliceOf(t)
			}
			if k.Default != "" {
				opts += ",default=" + k.Default
			}
		}
		tag := fmt.Sprintf(`zconfig:%q`, name+opts)
		if k.Doc != "" {
			tag += fmt.Sprintf(` doc:%q`, k.Doc)
		}
		fields = append(fields, reflect.StructField{Name: fmt.Sprintf("F%d", len(fields)), Type: typ, Tag: reflect.StructTag(tag)})
	}
	return fields, nil
}
