package main

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/starflow/starflow/builtins/llm"
	"github.com/starflow/starflow/internal/yamlerr"
)

// fileSettings are the sections of the configuration file (--llm-config)
// that are not the llm's (spec/config.md): the secrets scripts may use and
// the server's security settings.
type fileSettings struct {
	Secrets []string
	Server  serverSettings
}

type serverSettings struct {
	AllowedHosts      []string `yaml:"allowed_hosts"`
	AllowedOrigins    []string `yaml:"allowed_origins"`
	AllowInlineSource bool     `yaml:"allow_inline_source"`
}

// settings reads the secrets and server sections of the configuration
// file, if there is one.
func (m *Main) settings(c *common) (*fileSettings, error) {
	out := &fileSettings{}
	path := m.llmConfigPath(c)
	if path == "" {
		return out, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return out, parseSettings(path, data, out)
}

func parseSettings(path string, data []byte, out *fileSettings) error {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return yamlerr.From(path, err)
	}
	if len(f.Docs) == 0 || f.Docs[0].Body == nil {
		return nil
	}
	top, ok := f.Docs[0].Body.(*ast.MappingNode)
	if !ok {
		return nil // the llm configuration reports a file that is not a mapping
	}
	for _, kv := range top.Values {
		var err error
		switch kv.Key.String() {
		case "secrets":
			if err = yaml.NodeToValue(kv.Value, &out.Secrets, yaml.Strict()); err == nil {
				for _, name := range out.Secrets {
					if err := checkSecretName(name); err != nil {
						return &yamlerr.Error{File: path, Line: kv.Value.GetToken().Position.Line, Message: "secrets: " + err.Error()}
					}
				}
			}
		case "server":
			err = yaml.NodeToValue(kv.Value, &out.Server, yaml.Strict())
		}
		if err != nil {
			return yamlerr.From(path, err)
		}
	}
	return nil
}

var secretNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

func checkSecretName(name string) error {
	if !secretNameRE.MatchString(name) {
		return fmt.Errorf("%q is not a secret name (letters, digits and _, not starting with a digit)", name)
	}
	return nil
}

// declaredSecrets is the allowlist runs resolve secrets through
// (runtime.Options.CheckSecret): the names given with --secret, those
// listed under secrets: in the configuration file, and those the llm
// configuration names as secret(NAME) provider keys (a provider key given
// as env(NAME) is read by the llm module itself and is not a script's
// secret).
func declaredSecrets(flags, file []string, cfg *llm.Config) map[string]bool {
	out := map[string]bool{}
	for _, n := range append(append([]string(nil), flags...), file...) {
		out[n] = true
	}
	if cfg != nil {
		for _, p := range cfg.Providers {
			if p.APIKey.Secret != "" {
				out[p.APIKey.Secret] = true
			}
		}
	}
	return out
}

// secretCheck returns the runtime's CheckSecret for a set of declared
// names. The refusal names the secret, never a value.
func secretCheck(declared map[string]bool) func(string) error {
	return func(name string) error {
		if declared[name] {
			return nil
		}
		msg := fmt.Sprintf("not declared: runs may use only the secrets this starflow was started with (%s); declare it with --secret %s on the command that runs the script (starflow run, resume, serve...), or list it under secrets: in the configuration file (spec/config.md)", declaredList(declared), name)
		return fmt.Errorf("%s", msg)
	}
}

func declaredList(declared map[string]bool) string {
	if len(declared) == 0 {
		return "none"
	}
	names := make([]string, 0, len(declared))
	for n := range declared {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
