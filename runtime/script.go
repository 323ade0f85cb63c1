package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/starflow/starflow/journal"
)

// compiled holds the programs of one pinned script version.
type compiled struct {
	entry string
	progs map[string]*starlark.Program
}

func fileOptions(d journal.Dialect) *syntax.FileOptions {
	return &syntax.FileOptions{Set: true, While: d.While, Recursion: d.Recursion, GlobalReassign: false, TopLevelControl: false}
}

// ScriptName normalises a script path the way runs record it.
func ScriptName(p string) string {
	return filepath.ToSlash(filepath.Clean(p))
}

// readScripts reads the entry file and, transitively, every file it loads.
func readScripts(req StartRequest) (map[string][]byte, error) {
	if req.Script == "" {
		return nil, invalidf("no script given")
	}
	entry := ScriptName(req.Script)
	read := func(name string) ([]byte, error) {
		if req.Sources != nil {
			if src, ok := req.Sources[name]; ok {
				return src, nil
			}
			return nil, os.ErrNotExist
		}
		return os.ReadFile(filepath.FromSlash(name))
	}
	files := map[string][]byte{}
	root := path.Dir(entry)
	var visit func(name, from string, pos syntax.Position) error
	visit = func(name, from string, pos syntax.Position) error {
		if _, seen := files[name]; seen {
			return nil
		}
		src, err := read(name)
		if err != nil {
			what := "cannot read script " + name
			if errors.Is(err, os.ErrNotExist) {
				what += ": no such file"
			} else {
				what += ": " + err.Error()
			}
			if from == "" {
				return &InvalidError{Msg: what}
			}
			return &InvalidError{Pos: pos.String(), Msg: what}
		}
		files[name] = src
		f, err := fileOptions(journal.Dialect{While: true, Recursion: true}).Parse(name, src, 0)
		if err != nil {
			return syntaxErr(err)
		}
		for _, stmt := range f.Stmts {
			ld, ok := stmt.(*syntax.LoadStmt)
			if !ok {
				continue
			}
			mod, _ := ld.Module.Value.(string)
			target, err := resolveLoad(root, name, mod)
			if err != nil {
				return &InvalidError{Pos: ld.Module.TokenPos.String(), Msg: err.Error()}
			}
			if err := visit(target, name, ld.Module.TokenPos); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(entry, "", syntax.Position{}); err != nil {
		return nil, err
	}
	return files, nil
}

// resolveLoad maps a load() module string, relative to the loading file,
// to a script name. Loads stay inside the entry file's directory.
func resolveLoad(root, from, module string) (string, error) {
	if module == "" {
		return "", fmt.Errorf("load: empty module name")
	}
	if !strings.HasSuffix(module, ".star") {
		return "", fmt.Errorf("load(%q): only .star files can be loaded", module)
	}
	if path.IsAbs(module) || filepath.IsAbs(module) {
		return "", fmt.Errorf("load(%q): use a path relative to the loading file", module)
	}
	target := path.Clean(path.Join(path.Dir(from), module))
	rel := target
	if root != "." {
		if !strings.HasPrefix(target, root+"/") {
			return "", fmt.Errorf("load(%q): %s is outside the script's directory %s", module, target, root)
		}
		rel = strings.TrimPrefix(target, root+"/")
	}
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("load(%q): %s is outside the script's directory", module, target)
	}
	return target, nil
}

func syntaxErr(err error) error {
	var se syntax.Error
	if errors.As(err, &se) {
		return &InvalidError{Pos: se.Pos.String(), Msg: "syntax error: " + se.Msg}
	}
	return &InvalidError{Msg: err.Error()}
}

// compileAll parses and resolves every file, and checks the entry file
// defines main(input).
func (rt *Runtime) compileAll(entry string, files map[string][]byte, d journal.Dialect) (*compiled, error) {
	entry = ScriptName(entry)
	c := &compiled{entry: entry, progs: map[string]*starlark.Program{}}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		f, err := fileOptions(d).Parse(name, files[name], 0)
		if err != nil {
			return nil, syntaxErr(err)
		}
		if name == entry {
			if err := checkMain(f); err != nil {
				return nil, err
			}
		}
		prog, err := starlark.FileProgram(f, rt.predeclared.Has)
		if err != nil {
			var el resolve.ErrorList
			if errors.As(err, &el) && len(el) > 0 {
				msgs := make([]string, len(el))
				for i, e := range el {
					msgs[i] = e.Msg
					if i > 0 {
						msgs[i] = e.Pos.String() + ": " + e.Msg
					}
				}
				return nil, &InvalidError{Pos: el[0].Pos.String(), Msg: strings.Join(msgs, "; ")}
			}
			return nil, &InvalidError{Msg: err.Error()}
		}
		c.progs[name] = prog
	}
	return c, nil
}

func checkMain(f *syntax.File) error {
	for _, stmt := range f.Stmts {
		def, ok := stmt.(*syntax.DefStmt)
		if !ok || def.Name.Name != "main" {
			continue
		}
		required := 0
		for _, p := range def.Params {
			switch p.(type) {
			case *syntax.Ident:
				required++
			}
		}
		if len(def.Params) == 0 {
			return &InvalidError{Pos: def.Def.String(), Msg: "main must take one parameter, the run's input: def main(input):"}
		}
		if required > 1 {
			return &InvalidError{Pos: def.Def.String(), Msg: fmt.Sprintf("main takes %d required parameters; it is called with one, the run's input", required)}
		}
		return nil
	}
	return &InvalidError{Pos: f.Path + ":1:1", Msg: "no main function: a workflow defines def main(input): and returns its result"}
}

// program returns the compiled programs of a run's pinned manifest, from the
// cache or the store.
func (rt *Runtime) program(ctx context.Context, m journal.Manifest, d journal.Dialect) (*compiled, error) {
	key := manifestHash(m) + fmt.Sprintf("/%v/%v", d.While, d.Recursion)
	rt.progMu.Lock()
	c := rt.progs[key]
	rt.progMu.Unlock()
	if c != nil {
		return c, nil
	}
	files := make(map[string][]byte, len(m.Files))
	for name, h := range m.Files {
		src, err := rt.store.Blob(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("load pinned source of %s: %w", name, err)
		}
		files[name] = src
	}
	c, err := rt.compileAll(m.Entry, files, d)
	if err != nil {
		return nil, fmt.Errorf("compile pinned script: %w", err)
	}
	rt.progMu.Lock()
	if len(rt.progs) >= 256 {
		for k := range rt.progs { // evict one arbitrary entry
			delete(rt.progs, k)
			break
		}
	}
	rt.progs[key] = c
	rt.progMu.Unlock()
	return c, nil
}

func blobHash(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// manifestHash identifies a script version: the hash of the manifest's
// canonical JSON (encoding/json sorts map keys).
func manifestHash(m journal.Manifest) string {
	b, _ := json.Marshal(m)
	return blobHash(b)
}
