// Package flakyserver is a deliberately unreliable payment API for trying
// scripts/flaky_api.star: it answers with 503, 429 + Retry-After and
// dropped connections in a fixed pattern, and deduplicates charges by
// their Idempotency-Key the way a real payment API does. Run it with
//
//	go run ./scripts/flakyserver/cmd -addr 127.0.0.1:8080 -token dev-token
//
// The builtins/http tests run the same handler on a loopback httptest
// server.
package flakyserver

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Options configure a Server.
type Options struct {
	// Token, if set, is the bearer token POST /charges requires.
	Token string
	// RetryAfter is the wait a 429 asks for (default 1s). It is sent as
	// Retry-After (whole seconds, rounded up) and retry-after-ms.
	RetryAfter time.Duration
}

// Charge is one processed charge.
type Charge struct {
	ID     string `json:"id"`
	Order  string `json:"order"`
	Amount int    `json:"amount"`
	Key    string `json:"-"`
}

// Server is the flaky API:
//
//   - GET /status fails in a cycle of three: 503, then 429 with
//     Retry-After, then 200 {"status": "ok"}.
//   - POST /charges {"order": "...", "amount": n} needs an Idempotency-Key
//     (400 without one) and the bearer token (401 without it). For each key
//     the first request gets 503; the second is charged but its connection
//     is dropped before the answer (the response is lost); later requests
//     get the charge made the first time, with Idempotent-Replayed: true.
//     A key is never charged twice.
//   - GET /charges lists the charges.
type Server struct {
	opts     Options
	mu       sync.Mutex
	status   int
	requests map[string]int // by idempotency key
	charges  map[string]*Charge
	order    []*Charge
}

// New returns a Server.
func New(opts Options) *Server {
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = time.Second
	}
	return &Server{opts: opts, requests: map[string]int{}, charges: map[string]*Charge{}}
}

// Charges returns the charges made, in order.
func (s *Server) Charges() []Charge {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Charge, len(s.order))
	for i, c := range s.order {
		out[i] = *c
	}
	return out
}

// Requests returns how many POST /charges requests carried key.
func (s *Server) Requests(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[key]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/status" && r.Method == http.MethodGet:
		s.mu.Lock()
		s.status++
		n := s.status
		s.mu.Unlock()
		switch n % 3 {
		case 1:
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "warming up"})
		case 2:
			ra := s.opts.RetryAfter
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(ra.Seconds()))))
			w.Header().Set("Retry-After-Ms", strconv.FormatInt(ra.Milliseconds(), 10))
			writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "slow down"})
		default:
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		}
	case r.URL.Path == "/charges" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Charges())
	case r.URL.Path == "/charges" && r.Method == http.MethodPost:
		s.charge(w, r)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint"})
	}
}

func (s *Server) charge(w http.ResponseWriter, r *http.Request) {
	if s.opts.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.opts.Token {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Idempotency-Key header required"})
		return
	}
	var in struct {
		Order  string `json:"order"`
		Amount int    `json:"amount"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Order == "" || in.Amount <= 0 {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": "want {\"order\": str, \"amount\": positive int}"})
		return
	}
	s.mu.Lock()
	s.requests[key]++
	n := s.requests[key]
	c := s.charges[key]
	if c == nil && n >= 2 {
		c = &Charge{ID: fmt.Sprintf("ch_%d", len(s.order)+1), Order: in.Order, Amount: in.Amount, Key: key}
		s.charges[key] = c
		s.order = append(s.order, c)
	}
	s.mu.Unlock()
	switch {
	case n == 1:
		// Not charged. Close the connection so that the retry opens a
		// new one (as a restarting instance would).
		w.Header().Set("Connection", "close")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily unavailable"})
	case n == 2:
		// Charged, but the answer is lost.
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "lost"})
	default:
		w.Header().Set("Idempotent-Replayed", "true")
		writeJSON(w, http.StatusOK, c)
	}
}
