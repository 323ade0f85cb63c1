package main

import (
	"context"
	"fmt"
	"time"

	"github.com/starflow/starflow/internal/errtext"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
	"github.com/starflow/starflow/server"
)

func init() {
	register(command{name: "serve", summary: "run the server: execute runs, fire timers, serve the API", run: (*Main).cmdServe})
}

func (m *Main) cmdServe(ctx context.Context, args []string) int {
	var (
		c           common
		addr        string
		token       string
		concurrency int
		grace       time.Duration
		maxWait     time.Duration
		scripts     string
		allowHosts  listFlag
		origins     listFlag
		inline      bool
		maxBody     int64
		limits      limitFlags
	)
	fs := m.newFlagSet("serve", "serve [--addr 127.0.0.1:8644] [--concurrency N] [--token T] [--secret NAME] [--allow-host NAME] [--allow-origin ORIGIN] [--allow-inline-source] [--db DIR]")
	c.register(fs)
	fs.StringVar(&addr, "addr", server.DefaultAddr, "API address; an address that is not loopback requires --token")
	fs.StringVar(&token, "token", "", "bearer token the API requires (default $STARFLOW_TOKEN)")
	fs.IntVar(&concurrency, "concurrency", 16, "runs executing at once")
	fs.DurationVar(&grace, "shutdown-grace", 10*time.Second, "on SIGTERM/SIGINT, how long executing runs get to reach their next builtin boundary")
	fs.DurationVar(&maxWait, "max-wait", 2*time.Second, "longest wait spent holding a worker; longer waits suspend the run and a timer wakes it")
	fs.StringVar(&scripts, "scripts", "", "directory script paths in API requests are resolved in (default: the working directory)")
	fs.Var(&allowHosts, "allow-host", "a name clients may reach the API under besides its address, e.g. the public name behind a reverse proxy (repeatable; also server.allowed_hosts in the configuration file)")
	fs.Var(&origins, "allow-origin", "a web origin (https://console.example.com) whose pages may call the API, with CORS (repeatable; also server.allowed_origins; default: none)")
	fs.BoolVar(&inline, "allow-inline-source", false, "run code sent in API requests (source, sources; migrate and fork with new code): only if every client that can reach the API may run any code (also server.allow_inline_source)")
	fs.Int64Var(&maxBody, "max-body", 1<<20, "largest API request body in bytes")
	limits.register(fs)
	pos, code, ok := m.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		fmt.Fprintln(m.Stderr, "starflow serve: takes no arguments")
		return ExitUsage
	}
	if token == "" {
		token = m.Getenv("STARFLOW_TOKEN")
	}
	set, err := m.settings(&c)
	if err != nil {
		fmt.Fprintln(m.Stderr, "starflow serve: configuration:", err)
		return ExitUsage
	}
	if maxBody <= 0 || maxBody > journal.MaxRecordBytes {
		fmt.Fprintf(m.Stderr, "starflow serve: --max-body must be between 1 and %d bytes\n", journal.MaxRecordBytes)
		return ExitUsage
	}
	metrics := server.NewMetrics()
	opts := runtime.Options{MaxInlineWait: maxWait, OnCall: metrics.Observe}
	limits.apply(&opts)
	e, code := m.open(&c, "serve", opts)
	if e == nil {
		if m.lastLocked != nil {
			fmt.Fprintf(m.Stderr, "starflow serve: a server already owns this store (process %d at %s)\n", m.lastLocked.PID, m.lastLocked.Addr)
		}
		return code
	}
	defer e.Close()
	metrics.WatchLLM(e.llm.Health)
	srv, err := server.New(e.rt, server.Options{Addr: addr, Token: token, Concurrency: concurrency, ShutdownGrace: grace, ScriptDir: scripts, Logger: e.log, Metrics: metrics,
		MaxBodyBytes:      maxBody,
		AllowedHosts:      append(allowHosts, set.Server.AllowedHosts...),
		AllowedOrigins:    append(origins, set.Server.AllowedOrigins...),
		AllowInlineSource: inline || set.Server.AllowInlineSource})
	if err != nil {
		fmt.Fprintln(m.Stderr, "starflow serve:", err)
		return ExitUsage
	}
	if err := srv.Listen(); err != nil {
		fmt.Fprintln(m.Stderr, "starflow serve:", err)
		return ExitUsage
	}
	// Other starflow commands find the API through the store's owner file.
	if err := e.store.SetAddr("starflow serve", srv.Addr()); err != nil {
		fmt.Fprintln(m.Stderr, "starflow serve:", errtext.Of(err))
		return ExitStore
	}
	if err := srv.Serve(ctx); err != nil {
		fmt.Fprintln(m.Stderr, "starflow serve:", errtext.Of(err))
		return ExitStore
	}
	return ExitOK
}
