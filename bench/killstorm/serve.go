package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// api is a minimal client of the starflow API (spec/api.md).
type api struct {
	base string
	hc   *http.Client
}

// do sends a request; POSTs carry Content-Type: application/json, as the
// server requires.
func (a *api) do(method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return 0, err
	}
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(b, out)
	}
	return resp.StatusCode, nil
}

// apiRun is the part of a run the storm looks at.
type apiRun struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Waiting *struct {
		Builtin string `json:"builtin"`
	} `json:"waiting"`
}

func final(status string) bool {
	switch status {
	case "completed", "failed", "cancelled", "diverged":
		return true
	}
	return false
}

// startServer starts starflow serve on the scenario's store, on a port
// the kernel picks (the server records it in the store's owner file).
func (sc *scenario) startServer() (*proc, error) {
	args := []string{"serve", "--db", sc.db, "--scripts", sc.scripts, "--addr", "127.0.0.1:0",
		"--max-crashes", strconv.Itoa(sc.cfg.maxCrashes), "--max-wait", "300ms", "--log-format", "json", "--log-level", "warn"}
	return sc.spawn(append(args, sc.cfg.serveArgs...)...)
}

// serverAddr reads the address server p listens on from the owner file,
// once p has written it.
func (sc *scenario) serverAddr(p *proc) string {
	b, err := os.ReadFile(filepath.Join(sc.db, "starflow.owner"))
	if err != nil {
		return ""
	}
	var o struct {
		PID  int    `json:"pid"`
		Addr string `json:"addr"`
	}
	if json.Unmarshal(b, &o) != nil || o.PID != p.cmd.Process.Pid || o.Addr == "" {
		return ""
	}
	return "http://" + o.Addr
}

// driveServe runs the scenario's runs in starflow serve, SIGKILLing the
// server at random moments and starting it again, until every run has
// finished. A restarted server recovers interrupted runs by itself; the
// storm starts runs (a few per server lifetime), sends the signals and
// answers they wait for, and releases quarantined runs.
func (sc *scenario) driveServe() {
	rng := sc.rng(sc.mode + "-serve")
	killsLeft := sc.cfg.serveKills
	hc := &http.Client{Timeout: 5 * time.Second}
	for {
		if sc.allFinished() {
			return
		}
		if time.Now().After(sc.deadline) {
			for _, r := range sc.runs {
				if !r.finished {
					r.gaveUp = "the scenario timed out (-timeout)"
				}
			}
			return
		}
		p, err := sc.startServer()
		if err != nil {
			sc.finding("cannot start starflow serve: %v", err)
			time.Sleep(time.Second)
			continue
		}
		life := time.Duration(-1)
		if killsLeft > 0 {
			life = sc.cfg.serveLife.draw(rng)
		}
		if sc.lifetime(p, life, &api{hc: hc}) {
			killsLeft--
		}
		hc.CloseIdleConnections()
	}
}

func (sc *scenario) allFinished() bool {
	for _, r := range sc.runs {
		if !r.finished && r.gaveUp == "" {
			return false
		}
	}
	return true
}

// lifetime drives one server process until the storm kills it (true),
// it exits by itself, or every run has finished (then it is stopped
// with SIGTERM).
func (sc *scenario) lifetime(p *proc, life time.Duration, a *api) (killed bool) {
	started := 0
	delivered := map[string]bool{}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			sc.serverDied(p)
			return false
		case <-tick.C:
		}
		if life >= 0 && time.Since(p.start) >= life {
			if p.kill() {
				sc.mu.Lock()
				sc.st.kills++
				sc.afterKill = storeFiles(sc.db)
				sc.mu.Unlock()
				sc.logf("killed the server after %s", life)
				for _, r := range sc.runs {
					if !r.finished {
						// A death before the run existed is harmless
						// to the checks: no request precedes it.
						r.deaths = append(r.deaths, p.death)
						if r.acked {
							r.kills++
						}
					}
				}
				return true
			}
			sc.serverDied(p)
			return false
		}
		if time.Now().After(sc.deadline) {
			sc.stopServer(p)
			return false
		}
		if a.base == "" {
			if a.base = sc.serverAddr(p); a.base == "" {
				continue
			}
		}
		var list struct {
			Runs []apiRun `json:"runs"`
		}
		if _, err := a.do(http.MethodGet, "/v1/runs?limit=10000", nil, &list); err != nil {
			continue
		}
		got := map[string]apiRun{}
		for _, r := range list.Runs {
			got[r.ID] = r
		}
		for _, r := range sc.runs {
			ar, ok := got[r.id]
			if !ok {
				if r.acked && !r.posted {
					continue // re-started below
				}
				if r.acked {
					// Started (acknowledged, or listed), but the store
					// does not have it after a restart.
					sc.finding("%s: the run was acknowledged by POST /v1/runs (or listed) but is not in the store after a restart; starting it again", r.id)
					r.posted = false
				}
				continue
			}
			switch {
			case final(ar.Status):
				r.finished = true
			case ar.Status == "quarantined":
				if _, err := a.do(http.MethodPost, "/v1/runs/"+r.id+"/retry", map[string]string{"by": "killstorm"}, nil); err == nil {
					sc.mu.Lock()
					sc.st.quarantined++
					sc.mu.Unlock()
					sc.logf("%s was quarantined; retried", r.id)
				}
			case ar.Status == "waiting" && ar.Waiting != nil && !delivered[r.id]:
				switch ar.Waiting.Builtin {
				case "wait_signal":
					if _, err := a.do(http.MethodPost, "/v1/runs/"+r.id+"/signals/go", map[string]any{"value": signalValue(r.id), "by": "killstorm"}, nil); err == nil {
						delivered[r.id] = true
					}
				case "ask_human":
					code, err := a.do(http.MethodPost, "/v1/runs/"+r.id+"/answer", map[string]any{"value": "yes", "by": "killstorm"}, nil)
					if err == nil || code == http.StatusConflict {
						delivered[r.id] = true
					}
				}
			}
		}
		// Start a few runs per lifetime (and again any the store lost).
		for _, r := range sc.runs {
			if started >= sc.cfg.stagger {
				break
			}
			if r.finished || r.posted {
				continue
			}
			if _, ok := got[r.id]; ok {
				r.posted, r.acked = true, true
				continue
			}
			body := map[string]any{"id": r.id, "script": r.kind + ".star", "input": r.input, "durability": sc.mode}
			if _, err := a.do(http.MethodPost, "/v1/runs", body, nil); err != nil {
				break
			}
			r.posted, r.acked = true, true
			started++
		}
		if sc.allFinished() {
			sc.stopServer(p)
			return false
		}
	}
}

// serverDied notes a server that exited without being killed.
func (sc *scenario) serverDied(p *proc) {
	res := result{code: p.code, stderr: p.stderr.String(), death: p.death}
	for _, r := range sc.runs {
		if !r.finished {
			r.deaths = append(r.deaths, p.death)
		}
	}
	if p.code == 6 {
		sc.openFailure("serve", "serve --db "+sc.db, res.stderr)
		return
	}
	sc.otherExit("serve", res, "serve --db "+sc.db)
}

// stopServer shuts p down gracefully (SIGTERM), or kills it after 30s.
func (sc *scenario) stopServer(p *proc) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.code != 0 {
			sc.otherExit("serve shutdown", result{code: p.code, stderr: p.stderr.String()}, "serve --db "+sc.db)
		}
	case <-time.After(30 * time.Second):
		sc.finding("starflow serve did not stop within 30s of SIGTERM; killed")
		p.kill()
		for _, r := range sc.runs {
			if !r.finished {
				r.deaths = append(r.deaths, p.death)
			}
		}
	}
}
