package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/starflow/starflow/builtins/llm"
	"github.com/starflow/starflow/runtime"
)

// Metrics are the server's Prometheus metrics, served at /metrics. Create
// them before the runtime and pass Observe as runtime.Options.OnCall, so
// every builtin call is counted.
type Metrics struct {
	reg        *prometheus.Registry
	calls      *prometheus.CounterVec
	errors     *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	executions *prometheus.CounterVec
}

// NewMetrics returns the metrics, registered in a registry of their own
// (with the Go runtime and process collectors).
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starflow_builtin_calls_total",
			Help: "Builtin calls by builtin and outcome: ok, error, replayed (answered from the journal), retry (a failed attempt that was retried), waiting (an in-process wait).",
		}, []string{"builtin", "outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starflow_builtin_errors_total",
			Help: "Builtin calls that failed after their retries, by builtin and error kind.",
		}, []string{"builtin", "kind"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "starflow_builtin_call_duration_seconds",
			Help:    "Duration of builtin calls executed live (retries and waits included), by builtin.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"builtin"}),
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starflow_run_executions_total",
			Help: "Executions of runs by the status they ended in: completed, failed, waiting, cancelled, diverged, interrupted, error (could not execute).",
		}, []string{"status"}),
	}
	m.reg.MustRegister(m.calls, m.errors, m.latency, m.executions,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe counts a builtin call; pass it as runtime.Options.OnCall.
func (m *Metrics) Observe(ev runtime.CallEvent) {
	m.calls.WithLabelValues(ev.Builtin, ev.Outcome).Inc()
	switch ev.Outcome {
	case "ok":
		m.latency.WithLabelValues(ev.Builtin).Observe(ev.Duration.Seconds())
	case "error":
		m.latency.WithLabelValues(ev.Builtin).Observe(ev.Duration.Seconds())
		m.errors.WithLabelValues(ev.Builtin, ev.Kind).Inc()
	}
}

// WatchLLM exports the llm deployments' live health on every scrape.
func (m *Metrics) WatchLLM(health func() []llm.DeploymentHealth) {
	m.reg.MustRegister(&llmCollector{health: health})
}

func (m *Metrics) execution(status string) {
	if m != nil {
		m.executions.WithLabelValues(status).Inc()
	}
}

// watchServer exports the queue, the executing runs and the timers.
func (m *Metrics) watchServer(s *Server) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "starflow_runs_queued", Help: "Runs waiting for a worker."},
			func() float64 { q, _, _ := s.Stats(); return float64(q) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "starflow_runs_executing", Help: "Runs executing now."},
			func() float64 { _, r, _ := s.Stats(); return float64(r) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "starflow_timers", Help: "Waiting runs with a wake-up time."},
			func() float64 { _, _, t := s.Stats(); return float64(t) }),
	)
}

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// llmCollector reads the llm module's health at scrape time.
type llmCollector struct {
	health func() []llm.DeploymentHealth
}

var (
	llmBreaker = prometheus.NewDesc("starflow_llm_breaker_open",
		"1 if the deployment's circuit breaker is open (the deployment is out of the pool), 0.5 half-open, 0 closed.",
		[]string{"deployment", "provider", "model"}, nil)
	llmCalls = prometheus.NewDesc("starflow_llm_deployment_requests_total",
		"Requests sent to the deployment since the process started.", []string{"deployment", "provider", "model"}, nil)
	llmFailures = prometheus.NewDesc("starflow_llm_deployment_failures_total",
		"Failed requests to the deployment since the process started.", []string{"deployment", "provider", "model"}, nil)
	llmLatency = prometheus.NewDesc("starflow_llm_deployment_latency_seconds",
		"Mean latency of the deployment's recent requests.", []string{"deployment", "provider", "model"}, nil)
	llmCooldown = prometheus.NewDesc("starflow_llm_deployment_cooldown_seconds",
		"Time left in the deployment's rate-limit or quota cooldown.", []string{"deployment", "provider", "model"}, nil)
)

func (c *llmCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{llmBreaker, llmCalls, llmFailures, llmLatency, llmCooldown} {
		ch <- d
	}
}

func (c *llmCollector) Collect(ch chan<- prometheus.Metric) {
	for _, h := range c.health() {
		labels := []string{h.Name, h.Provider, h.Model}
		open := 0.0
		switch h.Breaker {
		case "open":
			open = 1
		case "half-open":
			open = 0.5
		}
		ch <- prometheus.MustNewConstMetric(llmBreaker, prometheus.GaugeValue, open, labels...)
		ch <- prometheus.MustNewConstMetric(llmCalls, prometheus.CounterValue, float64(h.Calls), labels...)
		ch <- prometheus.MustNewConstMetric(llmFailures, prometheus.CounterValue, float64(h.Failures), labels...)
		ch <- prometheus.MustNewConstMetric(llmLatency, prometheus.GaugeValue, h.LatencyMean.Seconds(), labels...)
		ch <- prometheus.MustNewConstMetric(llmCooldown, prometheus.GaugeValue, h.CoolingDown.Seconds(), labels...)
	}
}
