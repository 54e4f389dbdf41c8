package host

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Prefix is the start of every plugin executable's name:
// `%import NAME` loads zeoraid-plugin-NAME.
const Prefix = "zeoraid-plugin-"

// EnvPath is the variable naming the directories searched first for
// plugins, colon-separated.
const EnvPath = "ZEORAID_PLUGIN_PATH"

// SearchDirs returns the directories searched for plugins, in order:
// $ZEORAID_PLUGIN_PATH, the configuration file's directory (configDir, ""
// for none), the zeoraid executable's directory, then $PATH. Each appears
// once, at its first place.
func SearchDirs(configDir string) []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		if d == "" {
			return
		}
		if abs, err := filepath.Abs(d); err == nil {
			d = abs
		}
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	for _, d := range filepath.SplitList(os.Getenv(EnvPath)) {
		add(d)
	}
	add(configDir)
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		add(filepath.Dir(exe))
	}
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		add(d)
	}
	return dirs
}

// NotFoundError is a plugin that is in none of the directories searched.
type NotFoundError struct {
	Name     string
	Searched []string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("no plugin %s: no executable %s%s in %s (set $%s to add directories)",
		e.Name, Prefix, e.Name, strings.Join(e.Searched, ":"), EnvPath)
}

// Find returns the path of the executable of plugin name: the first
// zeoraid-plugin-NAME among SearchDirs(configDir).
func Find(name, configDir string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("%q is not a plugin name", name)
	}
	dirs := SearchDirs(configDir)
	for _, d := range dirs {
		p := filepath.Join(d, Prefix+name)
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", &NotFoundError{Name: name, Searched: dirs}
}

// Found is one plugin executable found by List.
type Found struct {
	Name string // NAME of zeoraid-plugin-NAME
	Path string
	// ShadowedBy is the path of the plugin of the same name found earlier,
	// which is the one %import loads; "" for that one.
	ShadowedBy string
}

// List returns every plugin executable in SearchDirs(configDir), in
// search order, the ones %import would not load marked as shadowed.
func List(configDir string) []Found {
	var out []Found
	first := map[string]string{}
	for _, d := range SearchDirs(configDir) {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		var names []string
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), Prefix) && len(e.Name()) > len(Prefix) {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		for _, n := range names {
			p := filepath.Join(d, n)
			if !isExecutable(p) {
				continue
			}
			f := Found{Name: strings.TrimPrefix(n, Prefix), Path: p, ShadowedBy: first[n]}
			if f.ShadowedBy == "" {
				first[n] = p
			}
			out = append(out, f)
		}
	}
	return out
}

// isExecutable reports whether p is a regular file someone may execute.
func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
