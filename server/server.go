// Package server owns starflow's long-running process: it executes runs on
// a bounded pool of workers, wakes waiting runs when their timers are due
// or when they are answered or signalled, recovers every interrupted run
// at start, shuts down gracefully, and serves the JSON API under /v1 that
// the CLI and other clients use (spec/api.md).
//
// # Basics
//
// A waiting run costs the server nothing but, if it has a wake-up time, one
// timer entry: it holds no goroutine and no interpreter. When it is due, or
// an answer or signal that ends its wait arrives, the run is queued and a
// worker resumes it, which replays its journal and continues.
//
// # Caveats
//
// The server assumes it owns the store (the Badger store enforces one
// owner). It listens on loopback unless given a bearer token.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

// Options configure a Server. Zero values take the defaults.
type Options struct {
	// Addr is where the API listens (default 127.0.0.1:8644; port 0 picks
	// a free port). An address that is not loopback requires Token.
	Addr string
	// Token, if set, is the bearer token every API request must carry.
	Token string
	// Concurrency bounds the runs executing at once (default 16).
	Concurrency int
	// ShutdownGrace is how long shutdown lets executing runs reach their
	// next builtin boundary before interrupting them (default 10s).
	ShutdownGrace time.Duration
	// MaxBodyBytes bounds request bodies (default 1 MiB).
	MaxBodyBytes int64
	// ScriptDir is where script paths in start requests are resolved; they
	// must stay inside it (default: the working directory).
	ScriptDir string
	// Logger receives the server's events.
	Logger zerolog.Logger
	// Metrics, if set, are served at /metrics (see NewMetrics).
	Metrics *Metrics
	// AllowedHosts are names (host, or host:port) requests may carry in
	// Host besides the address the server listens on (and, on loopback,
	// 127.0.0.1, localhost and [::1] with its port): the public name
	// behind a reverse proxy. Other Host values are refused (421).
	AllowedHosts []string
	// AllowedOrigins are web origins (scheme://host[:port]) whose pages
	// may call the API; they get CORS headers. Requests from other
	// origins are refused (403).
	AllowedOrigins []string
	// AllowInlineSource lets start, migrate and fork requests carry the
	// code itself (source, sources); by default only script files in
	// ScriptDir run.
	AllowInlineSource bool
}

// DefaultAddr is the API's default address.
const DefaultAddr = "127.0.0.1:8644"

// Server executes runs and serves the API.
type Server struct {
	rt    *runtime.Runtime
	store journal.Store
	opts  Options
	log   zerolog.Logger

	queue  *queue
	timers *timers
	watch  *watchers

	ln   net.Listener
	http *http.Server

	runCtx     context.Context
	cancelRuns context.CancelFunc
	workers    sync.WaitGroup
}

// New returns a server for rt. It refuses an address other than loopback
// without a token.
func New(rt *runtime.Runtime, opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 10 * time.Second
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.ScriptDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		opts.ScriptDir = wd
	}
	dir, err := filepath.Abs(opts.ScriptDir)
	if err != nil {
		return nil, err
	}
	opts.ScriptDir = dir
	loopback, err := isLoopback(opts.Addr)
	if err != nil {
		return nil, err
	}
	if !loopback && opts.Token == "" {
		return nil, fmt.Errorf("listening on %s, which is not a loopback address, requires a bearer token (--token or $STARFLOW_TOKEN)", opts.Addr)
	}
	if err := checkSecurityOptions(&opts); err != nil {
		return nil, err
	}
	s := &Server{
		rt:     rt,
		store:  rt.Store(),
		opts:   opts,
		log:    opts.Logger,
		queue:  newQueue(),
		timers: newTimers(),
		watch:  newWatchers(),
	}
	s.runCtx, s.cancelRuns = context.WithCancel(context.Background())
	if opts.Metrics != nil {
		opts.Metrics.watchServer(s)
	}
	return s, nil
}

func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("invalid address %q: %v", addr, err)
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

// Listen binds the API address. Serve calls it if it was not called.
func (s *Server) Listen() error {
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.opts.Addr, err)
	}
	s.ln = ln
	return nil
}

// Addr returns the bound address (after Listen).
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.opts.Addr
	}
	return s.ln.Addr().String()
}

// Serve recovers interrupted and due runs, starts the workers and the
// timers, and serves the API until ctx ends; then it shuts down gracefully:
// it stops taking work, lets executing runs reach their next builtin
// boundary (up to ShutdownGrace), interrupts the rest, and returns with
// every run resumable.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	if err := s.recover(ctx); err != nil {
		return err
	}
	for i := 0; i < s.opts.Concurrency; i++ {
		s.workers.Add(1)
		go s.worker()
	}
	timersDone := make(chan struct{})
	timerCtx, stopTimers := context.WithCancel(context.Background())
	go func() {
		defer close(timersDone)
		s.timers.loop(timerCtx, func(id string) { s.enqueue(id) })
	}()
	s.http = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.http.Serve(s.ln) }()
	s.log.Info().Str("addr", s.Addr()).Int("concurrency", s.opts.Concurrency).Msg("serving")

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	s.log.Info().Msg("shutting down: no new work; executing runs stop at their next builtin boundary")
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	s.http.Shutdown(shutCtx)
	cancel()
	stopTimers()
	<-timersDone
	s.queue.close()
	s.rt.Drain()
	done := make(chan struct{})
	go func() { s.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.opts.ShutdownGrace):
		s.log.Warn().Dur("grace", s.opts.ShutdownGrace).Strs("runs", s.rt.Active()).Msg("interrupting runs still in a builtin call")
		s.cancelRuns()
		<-done
	}
	s.cancelRuns()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	s.log.Info().Msg("stopped; every unfinished run is resumable")
	return err
}

// listRecoverable lists runs with a status for recovery: damaged runs are
// logged and left alone, so that one of them cannot keep the server from
// starting.
func (s *Server) listRecoverable(ctx context.Context, st journal.Status) ([]*journal.Run, error) {
	runs, err := s.store.List(ctx, journal.Filter{Status: []journal.Status{st}})
	var bad *journal.CorruptRunsError
	if errors.As(err, &bad) {
		for _, c := range bad.Runs {
			s.log.Error().Str("run", c.RunID).Err(c).Msg("recovery: the run is damaged and left alone; restore the store from a backup, or cancel the run")
		}
		return runs, nil
	}
	return runs, err
}

// recover queues interrupted runs and arms timers for waiting ones.
func (s *Server) recover(ctx context.Context) error {
	running, err := s.listRecoverable(ctx, journal.StatusRunning)
	if err != nil {
		return err
	}
	for i := len(running) - 1; i >= 0; i-- { // oldest first
		s.enqueue(running[i].ID)
	}
	waiting, err := s.listRecoverable(ctx, journal.StatusWaiting)
	if err != nil {
		return err
	}
	due, answered := 0, 0
	for _, r := range waiting {
		// A message that ends the wait may have been delivered by a
		// process that died before resuming the run.
		if ok, err := s.rt.Deliverable(ctx, r); err != nil {
			s.log.Error().Str("run", r.ID).Err(err).Msg("recovery: cannot read the run's inbox; it stays waiting")
		} else if ok {
			answered++
			s.enqueue(r.ID)
			continue
		}
		if r.Waiting != nil && r.Waiting.Until != nil {
			if !r.Waiting.Until.After(time.Now()) {
				due++
			}
			s.timers.add(r.ID, *r.Waiting.Until)
		}
	}
	quarantined, err := s.listRecoverable(ctx, journal.StatusQuarantined)
	if err != nil {
		return err
	}
	for _, r := range quarantined {
		s.log.Warn().Str("run", r.ID).Msg("run is quarantined: it is not executed until someone retries it (starflow retry)")
	}
	s.log.Info().Int("interrupted", len(running)).Int("waiting", len(waiting)).Int("due", due).Int("answered", answered).Int("quarantined", len(quarantined)).Msg("recovered")
	return nil
}

// enqueue schedules a run for execution.
func (s *Server) enqueue(id string) { s.queue.push(id) }

// Enqueue schedules a run (one created with Runtime.Create, or a waiting
// run whose wait should be re-checked) for execution by a worker.
func (s *Server) Enqueue(id string) { s.enqueue(id) }

// Stats reports the runs queued, the runs executing, and the armed timers.
func (s *Server) Stats() (queued, executing, timers int) {
	q, r := s.queue.stats()
	return q, r, s.timers.len()
}

func (s *Server) worker() {
	defer s.workers.Done()
	for {
		id, ok := s.queue.pop()
		if !ok {
			return
		}
		s.timers.remove(id)
		out, err := s.rt.Resume(s.runCtx, id)
		s.afterRun(id, out, err)
		again := s.queue.finish(id)
		if again {
			s.enqueue(id)
		}
		s.watch.notify(id)
	}
}

func (s *Server) afterRun(id string, out *runtime.Outcome, err error) {
	switch {
	case errors.Is(err, runtime.ErrInterrupted):
		s.opts.Metrics.execution("interrupted")
		s.log.Info().Str("run", id).Msg("run interrupted; it resumes at the next start")
		return
	case err != nil:
		s.opts.Metrics.execution("error")
		s.log.Error().Str("run", id).Err(err).Msg("run could not execute")
		return
	}
	s.opts.Metrics.execution(string(out.Status))
	if out.Status == journal.StatusQuarantined {
		s.log.Error().Str("run", id).Str("reason", out.Error.Message).Msg("run quarantined")
		return
	}
	ev := s.log.Info().Str("run", id).Str("status", string(out.Status)).Int("replayed", out.Stats.Replayed).Int("executed", out.Stats.Executed)
	if out.Status == journal.StatusWaiting && out.Waiting != nil {
		ev = ev.Str("waiting", out.Waiting.Reason)
		if out.Waiting.Until != nil {
			s.timers.add(id, *out.Waiting.Until)
		}
	}
	ev.Msg("run")
}

// resolveScript maps a script path from a request into ScriptDir.
func (s *Server) resolveScript(p string) (string, error) {
	full := p
	if !filepath.IsAbs(full) {
		full = filepath.Join(s.opts.ScriptDir, p)
	}
	full = filepath.Clean(full)
	rel, err := filepath.Rel(s.opts.ScriptDir, full)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("script %s is outside the server's script directory %s", p, s.opts.ScriptDir)
	}
	return full, nil
}
