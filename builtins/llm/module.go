package llm

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/starflow/starflow/builtins/llm/provider"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

// Options configure a Module.
type Options struct {
	// Config is the configuration; nil uses DefaultConfig(os.Getenv).
	Config *Config
	// KV holds the response cache (degraded mode) and answers kept under
	// their call's idempotency key; nil disables both. The Badger store
	// (journal/badgerstore.Store) implements it.
	KV journal.KV
	// Logger receives circuit-breaker changes and alert-worthy failures
	// (bad keys, unknown models). Calls made inside a run log to the run's
	// logger instead.
	Logger zerolog.Logger
	// HTTPClient sends provider requests; nil uses a client with a
	// connection pool sized for concurrent calls. Per-attempt timeouts come
	// from the configuration, not from the client.
	HTTPClient *http.Client
	// Now is the clock for cooldowns, capacity windows, deadlines and
	// cache stamps of calls made with Complete, and for Health; nil uses
	// time.Now. Calls made by scripts use the runtime's clock
	// (runtime.Call.Now) instead, so that the runtime's waits, skipped
	// ones too, are seen by the cooldowns they wait for; a host that also
	// uses Complete or Health should pass the runtime's clock here
	// (Runtime.Now), as cmd/starflow does, so that all agree. Circuit
	// breakers, per-request timeouts and latency measurements use real
	// time, and so do the reset times providers send as dates.
	Now func() time.Time
	// LatencyClock is the clock provider requests are timed with, for the
	// latency strategy and latency_ms; nil uses time.Now, whose readings
	// carry the monotonic clock. Tests pass a clock that their servers
	// advance, so that a deployment's latency does not depend on how busy
	// the machine is.
	LatencyClock func() time.Time
	// Secrets resolves env(NAME) keys at request time; nil reads the
	// environment. secret(NAME) keys resolve through the run's secret
	// resolver inside a run, and through Secrets outside one.
	Secrets func(name string) (string, error)
	// WrapProvider, if set, is called once for each provider client New
	// builds (name is the provider's name in the configuration) and
	// returns the Provider to use instead: fault injection (package chaos)
	// wraps clients this way, the fake provider included.
	WrapProvider func(name string, kind provider.Kind, p provider.Provider) provider.Provider
}

// Module is a configured llm module: the llm() builtin and the routing and
// health state behind it. It is safe for concurrent use by many runs.
type Module struct {
	cfg     *Config
	kv      journal.KV
	log     zerolog.Logger
	now     func() time.Time
	latency func() time.Time // times provider requests
	secrets func(string) (string, error)

	aliases map[string]*alias
	states  map[string]*state

	schemaMu sync.Mutex
	schemas  map[string]*compiledSchema
}

// alias is an Alias ready to route.
type alias struct {
	cfg   *Alias
	tiers []*tier // own tiers, by tier number
	chain []*tier // own tiers then the fallbacks' tiers, at most MaxTiers
}

// tier is the deployments of one alias that share a tier number.
type tier struct {
	alias    *alias
	level    int
	strategy Strategy
	members  []*member

	mu    sync.Mutex
	cw    []int  // smooth weighted round-robin current weights
	rr    uint64 // round-robin counter
	picks uint64 // latency strategy: counts picks for exploration
}

// member is a deployment as a tier member.
type member struct {
	alias   *alias
	cfg     *Deployment
	prov    *Provider
	client  provider.Provider
	st      *state
	timeout time.Duration
}

// New builds a Module. It checks that the configuration is complete (every
// deployment's provider exists) but reads no keys: those are resolved at
// request time.
func New(opts Options) (*Module, error) {
	cfg := opts.Config
	if cfg == nil {
		cfg = DefaultConfig(os.Getenv)
	}
	m := &Module{cfg: cfg, kv: opts.KV, log: opts.Logger, now: opts.Now, secrets: opts.Secrets,
		aliases: map[string]*alias{}, states: map[string]*state{}, schemas: map[string]*compiledSchema{}}
	if m.now == nil {
		m.now = time.Now
	}
	m.latency = opts.LatencyClock
	if m.latency == nil {
		m.latency = time.Now
	}
	if m.secrets == nil {
		m.secrets = runtime.EnvSecrets
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient()
	}
	h := cfg.Health.withDefaults()
	m.cfg = &Config{Source: cfg.Source, Providers: cfg.Providers, Models: cfg.Models, Health: h, Cache: cfg.Cache}

	// One client per provider (and per deployment base URL override).
	clients := map[string]provider.Provider{}
	fakes := map[string]provider.Provider{}
	wrap := func(p *Provider, c provider.Provider) provider.Provider {
		if opts.WrapProvider != nil {
			if w := opts.WrapProvider(p.Name, p.Type, c); w != nil {
				return w
			}
		}
		return c
	}
	clientFor := func(p *Provider, baseURL string) (provider.Provider, error) {
		if p.Type == provider.Fake {
			if f := fakes[p.Name]; f != nil {
				return f, nil
			}
			f := wrap(p, provider.NewFake(p.Fake))
			fakes[p.Name] = f
			return f, nil
		}
		if baseURL == "" {
			baseURL = p.BaseURL
		}
		k := p.Name + "\x00" + baseURL
		if c := clients[k]; c != nil {
			return c, nil
		}
		c, err := provider.NewHTTP(p.Type, baseURL, p.APIVersion, hc)
		if err != nil {
			return nil, fmt.Errorf("llm: provider %s: %w", p.Name, err)
		}
		w := wrap(p, c)
		clients[k] = w
		return w, nil
	}

	names := make([]string, 0, len(cfg.Models))
	for n := range cfg.Models {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		ac := cfg.Models[name]
		a := &alias{cfg: ac}
		byTier := map[int]*tier{}
		for _, d := range ac.Deployments {
			p := cfg.Providers[d.Provider]
			if p == nil {
				return nil, fmt.Errorf("llm: model %s: deployment %s: no provider %q", name, d.Name, d.Provider)
			}
			c, err := clientFor(p, d.BaseURL)
			if err != nil {
				return nil, err
			}
			base := d.BaseURL
			if base == "" {
				base = p.BaseURL
			}
			id := p.Name + "\x00" + base + "\x00" + d.Model + "\x00" + d.Region
			st := m.states[id]
			if st == nil {
				st = newState(id, d.Name, p.Name, d.Model, d.Region, h, m.log)
				m.states[id] = st
			}
			if len(st.aliases) == 0 || st.aliases[len(st.aliases)-1] != name {
				st.aliases = append(st.aliases, name)
			}
			timeout := d.Timeout
			if timeout <= 0 {
				timeout = p.Timeout
			}
			if timeout <= 0 {
				timeout = ac.Timeout
			}
			if timeout <= 0 {
				timeout = DefaultTimeout
			}
			t := byTier[d.Tier]
			if t == nil {
				strategy := ac.Strategy
				if strategy == "" {
					strategy = Weighted
				}
				t = &tier{alias: a, level: d.Tier, strategy: strategy}
				byTier[d.Tier] = t
				a.tiers = append(a.tiers, t)
			}
			t.members = append(t.members, &member{alias: a, cfg: d, prov: p, client: c, st: st, timeout: timeout})
			t.cw = append(t.cw, 0)
		}
		sort.Slice(a.tiers, func(i, j int) bool { return a.tiers[i].level < a.tiers[j].level })
		m.aliases[name] = a
	}
	// Fallback chains: own tiers, then each fallback alias's chain, each
	// alias once, bounded by MaxTiers.
	for _, a := range m.aliases {
		seen := map[string]bool{}
		var walk func(x *alias)
		walk = func(x *alias) {
			if x == nil || seen[x.cfg.Name] {
				return
			}
			seen[x.cfg.Name] = true
			a.chain = append(a.chain, x.tiers...)
			for _, f := range x.cfg.Fallbacks {
				walk(m.aliases[f])
			}
		}
		walk(a)
		maxTiers := a.cfg.MaxTiers
		if maxTiers <= 0 {
			maxTiers = DefaultMaxTiers
		}
		if len(a.chain) > maxTiers {
			a.chain = a.chain[:maxTiers]
		}
	}
	for _, st := range m.states {
		sort.Strings(st.aliases)
	}
	return m, nil
}

func defaultHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}}
}

// Config returns the configuration the module runs with.
func (m *Module) Config() *Config { return m.cfg }

// Aliases returns the model aliases scripts may name, sorted.
func (m *Module) Aliases() []string {
	out := make([]string, 0, len(m.aliases))
	for n := range m.aliases {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// pick chooses the next member of the tier to try, skipping those already
// tried in this round and those that cannot take a call now (whose
// reasons it reports), and reserves the request on the member's budgets
// (see state.reserve). est is the prompt's estimated tokens, estCall the
// request's with its answer.
func (t *tier) pick(now time.Time, est, estCall int, tried []*member) (*member, reservation, []skip) {
	mb, skips := t.choose(now, est, tried)
	var lost []*member
	for mb != nil {
		why, r := mb.st.reserve(now, est, estCall, mb.cfg)
		if why == "" {
			return mb, r, skips
		}
		// Another call took the last of its budget since choose looked.
		skips = append(skips, skip{mb, why, false})
		if lost == nil {
			lost = append(make([]*member, 0, len(tried)+len(t.members)), tried...)
		}
		lost = append(lost, mb)
		mb, _ = t.choose(now, est, lost)
	}
	return nil, reservation{}, skips
}

// choose is pick's choice, before the reservation.
func (t *tier) choose(now time.Time, est int, tried []*member) (*member, []skip) {
	var skips []skip
	var availBuf [16]int
	avail := availBuf[:0]
	for i, mb := range t.members {
		if containsMember(tried, mb) {
			continue
		}
		if t.strategy == Weighted && mb.cfg.Weight == 0 {
			continue
		}
		if mb.cfg.ContextWindow > 0 && est > mb.cfg.ContextWindow {
			skips = append(skips, skip{mb, fmt.Sprintf("the prompt (about %d tokens) exceeds its context window of %d", est, mb.cfg.ContextWindow), true})
			continue
		}
		if why := mb.st.unavailable(now, est, mb.cfg); why != "" {
			skips = append(skips, skip{mb, why, false})
			continue
		}
		avail = append(avail, i)
	}
	if len(avail) == 0 {
		return nil, skips
	}
	if len(avail) == 1 {
		return t.members[avail[0]], skips
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch t.strategy {
	case Priority:
		return t.members[avail[0]], skips
	case RoundRobin:
		t.rr++
		return t.members[avail[int(t.rr%uint64(len(avail)))]], skips
	case Latency:
		t.picks++
		best, bestMean := -1, time.Duration(0)
		oldest, oldestAt := -1, time.Time{}
		for _, i := range avail {
			mean, n, at := t.members[i].st.meanLatency()
			if n == 0 {
				return t.members[i], skips // measure it first
			}
			if best < 0 || mean < bestMean {
				best, bestMean = i, mean
			}
			if oldest < 0 || at.Before(oldestAt) {
				oldest, oldestAt = i, at
			}
		}
		if t.picks%20 == 0 {
			return t.members[oldest], skips
		}
		return t.members[best], skips
	case Capacity:
		best, bestH := -1, -1.0
		var ties [16]int
		nt := 0
		for _, i := range avail {
			h := t.members[i].st.headroom(now, t.members[i].cfg)
			switch {
			case h > bestH+1e-9:
				best, bestH, nt = i, h, 0
				ties[nt] = i
				nt++
			case h > bestH-1e-9 && nt < len(ties):
				ties[nt] = i
				nt++
			}
		}
		if nt > 1 {
			t.rr++
			return t.members[ties[int(t.rr%uint64(nt))]], skips
		}
		return t.members[best], skips
	default: // Weighted: smooth weighted round-robin over the available members
		total, best := 0, -1
		for _, i := range avail {
			w := t.members[i].cfg.Weight
			t.cw[i] += w
			total += w
			if best < 0 || t.cw[i] > t.cw[best] {
				best = i
			}
		}
		t.cw[best] -= total
		return t.members[best], skips
	}
}

type skip struct {
	m       *member
	why     string
	context bool // skipped because the prompt is too long for it
}

func containsMember(list []*member, m *member) bool {
	for _, x := range list {
		if x == m {
			return true
		}
	}
	return false
}

// describe names a member for messages: "openai/gpt-4o (tier 1)".
func (mb *member) describe() string {
	var b strings.Builder
	b.WriteString(mb.cfg.Name)
	if mb.cfg.Name != mb.cfg.Provider+"/"+mb.cfg.Model {
		b.WriteString(" [" + mb.cfg.Provider + " " + mb.cfg.Model + "]")
	}
	return b.String()
}
