// Command starflow runs durable Starlark workflows.
//
//	starflow run SCRIPT [--input JSON|@file] [--id ID] [--durability MODE] [--db DIR]
//	starflow resume ID
//	starflow show ID [--json]
//	starflow history ID [--json]
//	starflow list [--status S] [--json]
//	starflow cancel ID
//
// Each command is in its own file; exit codes are documented in
// spec/cli.md and in exitcodes.go.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/rs/zerolog"
	"go.starlark.net/starlark"

	"github.com/starflow/starflow/builtins"
	sfhttp "github.com/starflow/starflow/builtins/http"
	"github.com/starflow/starflow/builtins/llm"
	"github.com/starflow/starflow/chaos"
	"github.com/starflow/starflow/internal/errtext"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/journal/badgerstore"
	"github.com/starflow/starflow/runtime"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(NewMain().Run(ctx, os.Args[1:]))
}

// Main is the starflow command. Host programs can build their own binary
// with extra builtins by filling Builtins and Globals and calling Run.
type Main struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string

	// Builtins and Globals are added to the standard set.
	Builtins []*runtime.Builtin
	Globals  starlark.StringDict

	lastLocked *journal.LockedError // why the last open failed, if the store was locked
	test       *testHooks           // set in a `starflow test` child process
}

// NewMain returns a Main wired to the process's standard streams.
func NewMain() *Main {
	return &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(m *Main, ctx context.Context, args []string) int
}

var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

// Run executes the command line and returns the process exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		m.usage(m.Stderr)
		return ExitUsage
	}
	name := args[0]
	switch name {
	case "-h", "--help", "-help", "help":
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				return c.run(m, ctx, []string{"--help"})
			}
		}
		m.usage(m.Stdout)
		return ExitOK
	case "version", "--version":
		fmt.Fprintln(m.Stdout, "starflow", Version)
		return ExitOK
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(m.Stderr, "starflow: unknown command %q\n\n", name)
		m.usage(m.Stderr)
		return ExitUsage
	}
	return c.run(m, ctx, args[1:])
}

// Version is the starflow release.
const Version = "0.1.0-dev"

func (m *Main) usage(w io.Writer) {
	fmt.Fprint(w, `starflow runs durable Starlark workflows: a crash, a kill -9 or a deploy
loses nothing; the next start replays the journal and continues.

Usage:
  starflow <command> [arguments]

Commands:
`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.HasPrefix(n, "__") {
			continue // internal
		}
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, `
Run "starflow <command> --help" for a command's flags.
The store is --db DIR, else $STARFLOW_DB, else ./.starflow.
Exit codes: 0 completed, 1 failed, 2 bad usage or input, 3 waiting,
4 cancelled, 5 diverged, 6 store unavailable, 130 interrupted (spec/cli.md).
`)
}

// common holds the flags every command takes.
type common struct {
	db             string
	logLevel       string
	logFormat      string
	allowHosts     listFlag
	allowLinkLocal bool
	llmConfig      string
	chaos          string
	chaosSeed      int64
	chaosSeedSet   bool
	secrets        listFlag
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.db, "db", "", "store directory (default $STARFLOW_DB, else ./.starflow)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "auto", "log format: console, json, or auto (console on a terminal)")
	fs.Var(&c.allowHosts, "http-allow-host", "host http may call (repeatable; \"*.example.com\" for subdomains; default: any, also $STARFLOW_HTTP_ALLOW_HOSTS)")
	fs.BoolVar(&c.allowLinkLocal, "http-allow-link-local", false, "let http reach link-local and cloud metadata addresses (refused by default)")
	fs.StringVar(&c.chaos, "chaos", "", "inject faults into http and llm: a profile file (.yaml) or an inline spec such as 'llm:503@0.3,http:reset@0.1' (spec/chaos.md)")
	fs.Func("chaos-seed", "seed for --chaos, to replay a fault sequence exactly (default: the profile's, else random and printed)", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("want an integer")
		}
		c.chaosSeed, c.chaosSeedSet = n, true
		return nil
	})
	fs.Var(&c.secrets, "secret", "a secret scripts may use with secret(\"NAME\"), read from the environment variable NAME (repeatable; also secrets: in the configuration file; undeclared names are refused)")
	fs.StringVar(&c.llmConfig, "llm-config", "", "llm providers and model aliases, YAML (spec/config.md; default $STARFLOW_LLM_CONFIG, else from OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, else the offline fake)")
}

// listFlag is a repeatable, comma-splitting string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func (m *Main) dbDir(c *common) string {
	if c.db != "" {
		return c.db
	}
	if d := m.Getenv("STARFLOW_DB"); d != "" {
		return d
	}
	return ".starflow"
}

// newFlagSet returns a flag set whose --help prints the command's usage to
// stdout and exits 0, and whose errors exit 2.
func (m *Main) newFlagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: starflow %s\n\nFlags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags that may come before or after positional arguments.
// It returns the positionals, or an exit code when parsing ended the
// command (--help, or a bad flag).
func (m *Main) parse(fs *flag.FlagSet, args []string) ([]string, int, bool) {
	var pos []string
	// The flag package prints the usage itself when parsing fails or
	// --help is asked; print it once, here: to stdout for --help, to
	// stderr after the error otherwise.
	out := fs.Output()
	fs.SetOutput(io.Discard)
	defer fs.SetOutput(out)
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(m.Stdout)
				fs.Usage()
				return nil, ExitOK, false
			}
			fs.SetOutput(out)
			fmt.Fprintln(out, err)
			fs.Usage()
			return nil, ExitUsage, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, true
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func (m *Main) logger(c *common) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(c.logLevel)
	if err != nil || c.logLevel == "" {
		return zerolog.Nop(), fmt.Errorf("invalid --log-level %q (want debug, info, warn or error)", c.logLevel)
	}
	var w io.Writer = m.Stderr
	switch c.logFormat {
	case "console":
		w = newConsole(m.Stderr)
	case "json":
	case "auto", "":
		if isTerminal(m.Stderr) {
			w = newConsole(m.Stderr)
		}
	default:
		return zerolog.Nop(), fmt.Errorf("invalid --log-format %q (want console, json or auto)", c.logFormat)
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// env is what a command needs to work on runs.
type env struct {
	store *badgerstore.Store
	rt    *runtime.Runtime
	log   zerolog.Logger
	llm   *llm.Module
	chaos *chaos.Injector
}

func (e *env) Close() error { return e.store.Close() }

// open opens the store and builds the runtime. On failure it prints the
// error and returns the exit code to use.
func (m *Main) open(c *common, command string, opts runtime.Options) (*env, int) {
	log, err := m.logger(c)
	if err != nil {
		fmt.Fprintln(m.Stderr, "starflow:", err)
		return nil, ExitUsage
	}
	dir := m.dbDir(c)
	store, err := badgerstore.Open(dir, badgerstore.Options{Logger: log, Command: "starflow " + command})
	if err != nil {
		var le *journal.LockedError
		if errors.As(err, &le) && le.Addr != "" {
			m.lastLocked = le // a server owns the store: the caller may use its API
			return nil, ExitStore
		}
		fmt.Fprintln(m.Stderr, "starflow:", errtext.Of(err))
		return nil, ExitStore
	}
	inj, code := m.injector(c, log)
	if code != 0 {
		store.Close()
		return nil, code
	}
	hosts := append([]string(nil), c.allowHosts...)
	if env := m.Getenv("STARFLOW_HTTP_ALLOW_HOSTS"); env != "" && len(hosts) == 0 {
		(*listFlag)(&hosts).Set(env)
	}
	httpMod, err := sfhttp.New(sfhttp.Options{AllowHosts: hosts, AllowLinkLocal: c.allowLinkLocal, WrapTransport: inj.HTTPTransport})
	if err != nil {
		store.Close()
		fmt.Fprintln(m.Stderr, "starflow:", err)
		return nil, ExitUsage
	}
	// The llm module's clock is the runtime's (built below): one clock for
	// the runtime's waits and the deployments' cooldowns, also when
	// starflow test skips waits by moving it.
	var rt *runtime.Runtime
	llmMod, code := m.llmModule(c, store, log, inj, func() time.Time {
		if rt == nil {
			return time.Now()
		}
		return rt.Now()
	})
	if llmMod == nil {
		store.Close()
		return nil, code
	}
	for _, n := range c.secrets {
		if err := checkSecretName(n); err != nil {
			store.Close()
			fmt.Fprintln(m.Stderr, "starflow: --secret:", err)
			return nil, ExitUsage
		}
	}
	set, err := m.settings(c)
	if err != nil {
		store.Close()
		fmt.Fprintln(m.Stderr, "starflow: configuration:", err)
		return nil, ExitUsage
	}
	opts.CheckSecret = secretCheck(declaredSecrets(c.secrets, set.Secrets, llmMod.Config()))
	if opts.Secrets == nil {
		opts.Secrets = m.envSecret
	}
	standard := builtins.Standard()
	if m.test != nil {
		standard = builtins.Reproducible()
	}
	opts.Builtins = append(append(append(append(standard, httpMod.Builtins()...), llmMod.Builtins()...), opts.Builtins...), m.Builtins...)
	if m.test != nil {
		m.test.apply(&opts)
	}
	globals := builtins.Globals()
	for k, v := range httpMod.Globals() {
		globals[k] = v
	}
	for k, v := range m.Globals {
		globals[k] = v
	}
	opts.Globals = globals
	opts.Logger = log
	rt, err = runtime.New(store, opts)
	if err != nil {
		store.Close()
		fmt.Fprintln(m.Stderr, "starflow:", err)
		return nil, ExitUsage
	}
	return &env{store: store, rt: rt, log: log, llm: llmMod, chaos: inj}, 0
}

func (m *Main) llmConfigPath(c *common) string {
	if c.llmConfig != "" {
		return c.llmConfig
	}
	return m.Getenv("STARFLOW_LLM_CONFIG")
}

// injector builds the fault injector --chaos asks for (nil: none; a nil
// injector passes everything through).
func (m *Main) injector(c *common, log zerolog.Logger) (*chaos.Injector, int) {
	var p *chaos.Profile
	var err error
	switch cfg := m.llmConfigPath(c); {
	case c.chaos != "":
		if p, err = chaos.Load(c.chaos); err != nil {
			fmt.Fprintln(m.Stderr, "starflow: --chaos:", err)
			return nil, ExitUsage
		}
	case cfg != "":
		// The configuration file may carry a profile under "chaos:".
		data, rerr := os.ReadFile(cfg)
		var doc map[string]any
		if rerr != nil || yaml.Unmarshal(data, &doc) != nil || doc["chaos"] == nil {
			return nil, 0 // the llm module reports problems with the file
		}
		if p, err = chaos.ParseProfile(cfg, data); err != nil {
			fmt.Fprintln(m.Stderr, "starflow: chaos in", cfg+":", err)
			return nil, ExitUsage
		}
	default:
		return nil, 0
	}
	switch {
	case c.chaosSeedSet:
		p = p.WithSeed(c.chaosSeed)
	case !p.HasSeed:
		p = p.WithSeed(time.Now().UnixNano())
		fmt.Fprintf(m.Stderr, "starflow: chaos profile %s with seed %d; replay these faults with --chaos-seed %d\n", p.Name, p.Seed, p.Seed)
	}
	inj := chaos.New(p)
	inj.OnFault(func(e chaos.Event) {
		log.Info().Str("target", e.Target).Int("n", e.N).Str("fault", e.What()).Str("rule", e.RuleName).Str("key", e.Key).Msg("chaos: fault injected")
	})
	return inj, 0
}

// llmModule builds the llm builtin from --llm-config, $STARFLOW_LLM_CONFIG,
// or the environment's API keys.
func (m *Main) llmModule(c *common, store *badgerstore.Store, log zerolog.Logger, inj *chaos.Injector, now func() time.Time) (*llm.Module, int) {
	path := m.llmConfigPath(c)
	var cfg *llm.Config
	if path != "" {
		var err error
		if cfg, err = llm.LoadConfig(path); err != nil {
			fmt.Fprintln(m.Stderr, "starflow: --llm-config:", err)
			return nil, ExitUsage
		}
	} else {
		cfg = llm.DefaultConfig(m.Getenv)
	}
	mod, err := llm.New(llm.Options{Config: cfg, KV: store, Logger: log, Now: now, HTTPClient: inj.LLMClient(nil), WrapProvider: inj.WrapLLMProvider, Secrets: m.envSecret})
	if err != nil {
		fmt.Fprintln(m.Stderr, "starflow:", err)
		return nil, ExitUsage
	}
	return mod, 0
}

// envSecret resolves a secret, or an llm key, from the environment.
func (m *Main) envSecret(name string) (string, error) {
	if v := m.Getenv(name); v != "" {
		return v, nil
	}
	return "", fmt.Errorf("environment variable %s is not set", name)
}

// exitForError maps an error from the runtime or the store to an exit code
// and prints it.
func (m *Main) exitForError(err error) int {
	fmt.Fprintln(m.Stderr, "starflow:", errtext.Of(err))
	var le *journal.LockedError
	switch {
	case errors.Is(err, runtime.ErrInvalid):
		return ExitUsage
	case errors.As(err, &le), errors.Is(err, journal.ErrCorrupt):
		return ExitStore
	case errors.Is(err, runtime.ErrBusy):
		return ExitStore
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	}
	return ExitStore
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

func errorsIsNotFound(err error) bool { return errors.Is(err, journal.ErrNotFound) }
