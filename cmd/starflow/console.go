package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// console renders zerolog's JSON events for people: one line per builtin
// call ("#3 http.get ok 120ms") and one per script log line.
type console struct{ w io.Writer }

func newConsole(w io.Writer) io.Writer { return &console{w: w} }

func (c *console) Write(p []byte) (int, error) {
	var ev map[string]any
	d := json.NewDecoder(bytes.NewReader(p))
	d.UseNumber()
	if err := d.Decode(&ev); err != nil {
		return c.w.Write(p)
	}
	var b strings.Builder
	if ts, ok := ev["time"].(string); ok {
		if t, err := time.Parse(time.RFC3339, ts); err == nil {
			b.WriteString(t.Local().Format("15:04:05") + " ")
		}
	}
	msg, _ := ev["message"].(string)
	level, _ := ev["level"].(string)
	skip := map[string]bool{"time": true, "message": true, "level": true, "run": true}
	if msg == "call" {
		step, _ := ev["step"].(string)
		builtin, _ := ev["builtin"].(string)
		outcome, _ := ev["outcome"].(string)
		fmt.Fprintf(&b, "#%-4s %-14s %-8s", step, builtin, outcome)
		if d, ok := ev["duration"]; ok {
			b.WriteString(" " + fmtMillis(d))
		}
		for _, k := range []string{"step", "builtin", "outcome", "duration", "attempts"} {
			skip[k] = true
		}
		if a, ok := ev["attempts"].(json.Number); ok && a.String() != "1" {
			b.WriteString(" attempts=" + a.String())
		}
		for _, k := range []string{"wait", "for"} {
			if v, ok := ev[k]; ok {
				b.WriteString(" " + k + "=" + fmtMillis(v))
				skip[k] = true
			}
		}
	} else {
		lv := strings.ToUpper(level)
		if len(lv) > 4 {
			lv = lv[:4]
		}
		fmt.Fprintf(&b, "%-4s %s", lv, msg)
		skip["source"] = true
		if strings.HasPrefix(msg, "run ") {
			skip["run"] = false
		}
	}
	keys := make([]string, 0, len(ev))
	for k := range ev {
		if !skip[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := ev[k]
		if s, ok := v.(string); ok {
			if strings.ContainsAny(s, " \t\"=") {
				s = fmt.Sprintf("%q", s)
			}
			fmt.Fprintf(&b, " %s=%s", k, s)
			continue
		}
		vb, _ := json.Marshal(v)
		fmt.Fprintf(&b, " %s=%s", k, vb)
	}
	b.WriteByte('\n')
	if _, err := io.WriteString(c.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// fmtMillis renders zerolog's millisecond durations compactly.
func fmtMillis(v any) string {
	n, ok := v.(json.Number)
	if !ok {
		return fmt.Sprint(v)
	}
	f, err := n.Float64()
	if err != nil {
		return n.String()
	}
	return time.Duration(f * float64(time.Millisecond)).Round(time.Microsecond).String()
}
