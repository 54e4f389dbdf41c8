package stack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/zeoraid/zeoraid/zconfig"
)

// compatImports are %import names that make Python's section types
// available in ZConfig; zeoraid has those types built in, so they are
// no-ops.
var compatImports = map[string]bool{"gocept.zeoraid": true, "zeo": true, "zodb": true}

// ImportHandler resolves an %import that is not a compatibility no-op
// (plugins load their section types this way; the import's position names
// the configuration file, whose directory is searched). Returning an
// error makes the import a configuration error at its position.
type ImportHandler func(imp *zconfig.Import) error

// BuildOptions controls Build.
type BuildOptions struct {
	// DryRun decodes and checks every section without opening anything
	// (zeoraid validate).
	DryRun bool
	// Log is the parent logger; nodes get fields node, type and storage.
	Log logrus.FieldLogger
	// Pool shares exclusive resources; a new one is made when nil.
	Pool *Pool
	// Import resolves non-compatibility %imports; nil refuses them.
	Import ImportHandler
	// Previous is the running tree when Build serves a reload: a node at
	// the same path with the same fingerprint is reused as it is, one of
	// the same type whose storage is a Reconfigurer is asked to take the
	// new section in place, and only the rest is opened. Nothing of
	// Previous is closed or changed: the caller applies the new tree's
	// Changes and closes what it no longer uses (CloseUnused).
	Previous *Tree
}

// Reuse says how a node of a tree built over a previous one came to be.
type Reuse int

// The ways a node is built.
const (
	Opened       Reuse = iota // opened by this Build
	Kept                      // the previous tree's node, unchanged
	Reconfigured              // the previous tree's storage, with a Change to apply
)

func (r Reuse) String() string {
	switch r {
	case Kept:
		return "kept"
	case Reconfigured:
		return "reconfigured"
	}
	return "opened"
}

// Built is one opened node of the tree.
type Built struct {
	Storage Storage // nil in a dry run
	Path    string
	Type    string
	// Fingerprint identifies the node's configuration: its type, normalised
	// keys and its children's fingerprints. Equal fingerprints mean a reload
	// may reuse the node as it is.
	Fingerprint string
	Children    []*Built
	// Reuse tells whether the node was opened, kept or reconfigured;
	// Change is the prepared reconfiguration of a Reconfigured node.
	Reuse  Reuse
	Change Change
}

// Tree is a whole configuration built: one root per storage name.
type Tree struct {
	Names []string // storage names in configuration order
	Roots map[string]*Built
}

// Close closes every storage of the tree, children after their parents.
func (t *Tree) Close() error {
	var errs []error
	for _, name := range t.Names {
		errs = append(errs, t.Roots[name].close())
	}
	return errors.Join(errs...)
}

func (b *Built) close() error {
	var errs []error
	if b.Storage != nil {
		if err := b.Storage.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: close: %w", b.Path, err))
		}
	}
	for _, c := range b.Children {
		errs = append(errs, c.close())
	}
	return errors.Join(errs...)
}

// CloseUnused closes the storages of t that tree next does not use
// (parents before children), after a reload switched from t to next.
func (t *Tree) CloseUnused(next *Tree) error {
	used := map[Storage]bool{}
	for _, name := range next.Names {
		next.Roots[name].walk(func(b *Built) { used[b.Storage] = true })
	}
	var errs []error
	for _, name := range t.Names {
		t.Roots[name].walk(func(b *Built) {
			if b.Storage != nil && !used[b.Storage] {
				if err := b.Storage.Close(); err != nil {
					errs = append(errs, fmt.Errorf("%s: close: %w", b.Path, err))
				}
			}
		})
	}
	return errors.Join(errs...)
}

// Discard undoes a Build over a previous tree that will not be used:
// every node it opened is closed and every prepared Change discarded; the
// nodes it reused stay as they are.
func (t *Tree) Discard() error {
	var errs []error
	for _, name := range t.Names {
		errs = append(errs, t.Roots[name].discard())
	}
	return errors.Join(errs...)
}

// walk calls f for b and every node below it, parents first.
func (b *Built) walk(f func(*Built)) {
	f(b)
	for _, c := range b.Children {
		c.walk(f)
	}
}

func (b *Built) discard() error {
	var errs []error
	switch b.Reuse {
	case Kept:
		return nil // nothing below it is new either
	case Reconfigured:
		b.Change.Discard()
	default:
		if b.Storage != nil {
			if err := b.Storage.Close(); err != nil {
				errs = append(errs, fmt.Errorf("%s: close: %w", b.Path, err))
			}
		}
	}
	for _, c := range b.Children {
		errs = append(errs, c.discard())
	}
	return errors.Join(errs...)
}

// Build opens the storage tree of cfg, children first. Configuration errors
// of every section are collected and returned together as a
// zconfig.ErrorList before anything is opened; if opening a node fails,
// everything already opened is closed again and the error is an
// *OpenError naming the node's position and wrapping the cause.
func Build(ctx context.Context, cfg *Config, opts BuildOptions) (*Tree, error) {
	if opts.Log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		opts.Log = l
	}
	if opts.Pool == nil {
		opts.Pool = NewPool()
	}
	var errs zconfig.ErrorList
	for _, imp := range cfg.Imports {
		pkg := strings.ToLower(imp.Package)
		if compatImports[pkg] {
			continue
		}
		var err error
		if opts.Import == nil {
			err = fmt.Errorf("unknown %%import %s: zeoraid has no plugin by that name", imp.Package)
		} else {
			err = opts.Import(imp)
		}
		if err != nil {
			errs = append(errs, &zconfig.Error{Pos: imp.Pos, Msg: err.Error()})
		}
	}
	// Plan (decode and check) everything first, so a config error never
	// leaves half a tree open.
	plans := make([]*plan, 0, len(cfg.Storages))
	for _, s := range cfg.Storages {
		p, perrs := planNode(s, StorageName(s), StorageName(s))
		errs = append(errs, perrs...)
		plans = append(plans, p)
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return posLess(errs[i].Pos, errs[j].Pos) })
		return nil, errs
	}
	tree := &Tree{Roots: map[string]*Built{}}
	prev := map[string]*Built{}
	if opts.Previous != nil {
		for _, name := range opts.Previous.Names {
			opts.Previous.Roots[name].walk(func(b *Built) { prev[b.Path] = b })
		}
	}
	for _, p := range plans {
		b, err := p.open(ctx, opts, prev)
		if err != nil {
			_ = tree.Discard()
			return nil, err
		}
		tree.Names = append(tree.Names, p.storage)
		tree.Roots[p.storage] = b
	}
	return tree, nil
}

// OpenError is a storage section whose backend failed to open: where the
// section is (file:line:col), its node path and type, and the backend's
// error, which stays reachable by errors.Is and errors.As (a lock held by
// another process, a typed storage error).
type OpenError struct {
	Pos  zconfig.Pos
	Path string
	Type string
	Err  error
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("%s: %s: cannot open <%s>: %v", e.Pos, e.Path, e.Type, e.Err)
}

func (e *OpenError) Unwrap() error { return e.Err }

// plan is a decoded section waiting to be opened.
type plan struct {
	section  *zconfig.Section
	module   *Module
	options  any
	path     string
	storage  string // the mount name
	children []*plan
	finger   string
}

func planNode(s *zconfig.Section, path, storage string) (*plan, zconfig.ErrorList) {
	m, ok := Lookup(s.Type)
	if !ok {
		msg := fmt.Sprintf("unknown storage section type <%s>", s.Type)
		if sug := zconfig.Suggest(s.Type, TypeNames()); sug != "" {
			msg += fmt.Sprintf("; did you mean <%s>?", sug)
		}
		errs := zconfig.ErrorList{{Pos: s.Pos, Msg: msg}}
		// Its contents cannot be checked, but nested sections of unknown
		// types are reported too, so one run names every missing type.
		for _, c := range s.Sections {
			if _, known := Lookup(c.Type); !known {
				_, cerrs := planNode(c, path+"/"+c.Name, storage)
				errs = append(errs, cerrs...)
			}
		}
		return nil, errs
	}
	p := &plan{section: s, module: m, path: path, storage: storage}
	var errs zconfig.ErrorList
	// Nested storage sections are children; the rest is the module's own.
	own := *s
	own.Sections = nil
	var childSecs []*zconfig.Section
	for _, c := range s.Sections {
		if _, isStorage := Lookup(c.Type); isStorage && m.Children {
			childSecs = append(childSecs, c)
		} else {
			own.Sections = append(own.Sections, c)
		}
	}
	if m.Options != nil {
		p.options = m.NewOptions()
		if err := zconfig.Decode(&own, p.options); err != nil {
			var l zconfig.ErrorList
			if errors.As(err, &l) {
				errs = append(errs, l...)
			} else {
				errs = append(errs, &zconfig.Error{Pos: s.Pos, Msg: err.Error()})
			}
		}
	} else if len(own.Keys) > 0 {
		errs = append(errs, &zconfig.Error{Pos: own.Keys[0].Pos, Msg: fmt.Sprintf("<%s> takes no keys", s.Type)})
	}
	seen := map[string]*zconfig.Section{}
	for i, c := range childSecs {
		name := c.Name
		if name == "" {
			if m.NamedChildren {
				errs = append(errs, &zconfig.Error{Pos: c.Pos, Msg: fmt.Sprintf("storage #%d inside <%s> needs a name (<%s NAME>)", i+1, s.Type, c.Type)})
				continue
			}
			name = c.Type
		}
		if prev, dup := seen[name]; dup {
			errs = append(errs, &zconfig.Error{Pos: c.Pos, Msg: fmt.Sprintf("duplicate storage name %q inside <%s> (first at %s)", name, s.Type, prev.Pos)})
			continue
		}
		seen[name] = c
		cp, cerrs := planNode(c, path+"/"+name, storage)
		errs = append(errs, cerrs...)
		p.children = append(p.children, cp)
	}
	if v, ok := p.options.(OptionsValidator); ok && len(errs) == 0 {
		if err := v.Validate(len(childSecs)); err != nil {
			errs = append(errs, &zconfig.Error{Pos: s.Pos, Msg: fmt.Sprintf("<%s %s>: %v", s.Type, s.Name, err)})
		}
	}
	if m.Check != nil && len(errs) == 0 {
		if err := m.Check(p.options, len(childSecs)); err != nil {
			var l zconfig.ErrorList
			if errors.As(err, &l) {
				errs = append(errs, l...)
			} else {
				errs = append(errs, &zconfig.Error{Pos: s.Pos, Msg: fmt.Sprintf("<%s %s>: %v", s.Type, s.Name, err)})
			}
		}
	}
	if len(errs) == 0 {
		p.finger = fingerprint(s.Type, &own, p.children)
	}
	return p, errs
}

// fingerprint hashes a section's type, its keys (sorted, values as written
// after substitution), its non-storage subsections and its children's
// fingerprints. The section's name is part of its parent's view, not its
// own identity.
func fingerprint(typ string, own *zconfig.Section, children []*plan) string {
	h := sha256.New()
	fmt.Fprintf(h, "type %s\n", typ)
	writeKeys(h, own)
	for _, c := range children {
		fmt.Fprintf(h, "child %s %s\n", c.section.Name, c.finger)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func writeKeys(h interface{ Write([]byte) (int, error) }, s *zconfig.Section) {
	keys := make([]string, 0, len(s.Keys))
	for _, k := range s.Keys {
		keys = append(keys, k.Name+"="+k.Value)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "key %s\n", k)
	}
	for _, sub := range s.Sections {
		fmt.Fprintf(h, "section %s %s {\n", sub.Type, sub.Name)
		writeKeys(h, sub)
		fmt.Fprintf(h, "}\n")
	}
}

func (p *plan) open(ctx context.Context, opts BuildOptions, prev map[string]*Built) (*Built, error) {
	old := prev[p.path]
	if old != nil && (old.Type != p.section.Type || old.Storage == nil) {
		old = nil
	}
	if old != nil && old.Fingerprint == p.finger {
		kept := *old
		kept.Reuse, kept.Change = Kept, nil
		return &kept, nil
	}
	b := &Built{Path: p.path, Type: p.section.Type, Fingerprint: p.finger}
	node := &Node{
		Path: p.path, Name: p.section.Name, Type: p.section.Type, Pool: opts.Pool,
		Log: opts.Log.WithFields(logrus.Fields{"node": p.path, "type": p.section.Type, "storage": p.storage}),
	}
	for _, c := range p.children {
		cb, err := c.open(ctx, opts, prev)
		if err != nil {
			_ = b.discard()
			return nil, err
		}
		b.Children = append(b.Children, cb)
		node.Children = append(node.Children, cb.Storage)
		node.ChildNames = append(node.ChildNames, c.section.Name)
	}
	if opts.DryRun {
		return b, nil
	}
	if rc, ok := old.storage().(Reconfigurer); ok {
		ch, err := rc.Reconfigure(ctx, node, p.options)
		switch {
		case err == nil:
			b.Storage, b.Reuse, b.Change = old.Storage, Reconfigured, ch
			return b, nil
		case !errors.Is(err, ErrReopen):
			_ = b.discard()
			return nil, &OpenError{Pos: p.section.Pos, Path: p.path, Type: p.section.Type, Err: err}
		}
	}
	st, err := p.module.Open(ctx, node, p.options)
	if err != nil {
		_ = b.discard()
		return nil, &OpenError{Pos: p.section.Pos, Path: p.path, Type: p.section.Type, Err: err}
	}
	b.Storage = st
	return b, nil
}

func (b *Built) storage() Storage {
	if b == nil {
		return nil
	}
	return b.Storage
}
