package main

import (
	"encoding/json"
	"hash/fnv"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// request is one effect as the counting server saw it.
type request struct {
	at time.Time // when the whole request had arrived (wall clock)
	i  int       // the effect's index, from the body
}

// counter is the loopback server the scripts' http.post calls reach. It
// records every request's Idempotency-Key (<run-id>/<step>) with its
// arrival time: the effects, as the outside world saw them.
type counter struct {
	url   string
	delay time.Duration
	srv   *http.Server

	mu     sync.Mutex
	reqs   map[string][]request
	noKey  int // requests without an Idempotency-Key (a bug in the http builtin)
	badReq int // requests whose body was not {"i": N}
}

func startCounter(delay time.Duration) (*counter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &counter{url: "http://" + ln.Addr().String() + "/effect", delay: delay, reqs: map[string][]request{}}
	c.srv = &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
	go c.srv.Serve(ln)
	return c, nil
}

func (c *counter) close() { c.srv.Close() }

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		I *int `json:"i"`
	}
	err := json.NewDecoder(r.Body).Decode(&body)
	at := time.Now().Round(0) // wall clock: compared with journal times
	key := r.Header.Get("Idempotency-Key")
	c.mu.Lock()
	switch {
	case key == "":
		c.noKey++
	case err != nil || body.I == nil:
		c.badReq++
	}
	n := 0
	if key != "" && body.I != nil {
		n = len(c.reqs[key])
		c.reqs[key] = append(c.reqs[key], request{at: at, i: *body.I})
	}
	c.mu.Unlock()
	if key == "" || body.I == nil {
		http.Error(w, `{"error": "want an Idempotency-Key and {\"i\": N}"}`, http.StatusBadRequest)
		return
	}
	if c.delay > 0 {
		// Deterministic per key and attempt, so a seed replays it.
		h := fnv.New64a()
		h.Write([]byte(key))
		h.Write([]byte{byte(n)})
		time.Sleep(time.Duration(h.Sum64() % uint64(c.delay)))
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"key": key, "i": *body.I})
}

// requests returns a copy of the requests whose key belongs to run id.
func (c *counter) requests(id string) map[string][]request {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]request{}
	for k, rs := range c.reqs {
		if strings.HasPrefix(k, id+"/") {
			out[k] = append([]request(nil), rs...)
		}
	}
	return out
}

// total is the number of requests recorded.
func (c *counter) total() (n, noKey, bad int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range c.reqs {
		n += len(rs)
	}
	return n, c.noKey, c.badReq
}
