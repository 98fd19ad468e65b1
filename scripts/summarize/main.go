// Command summarize reads the JSON files scripts/bench.sh wrote into a
// directory and prints BENCHMARKS.md's tables: each figure as min / median /
// max over the rounds, beside the limit measured in the same rounds.
//
//	go run ./scripts/summarize /tmp/bench
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: summarize DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	// values[name] collects one figure per round.
	values := map[string][]float64{}
	add := func(name string, v float64, ok bool) {
		if ok {
			values[name] = append(values[name], v)
		}
	}
	// put(name)(get(path)) adds a looked-up figure.
	put := func(name string) func(float64, bool) {
		return func(v float64, ok bool) { add(name, v, ok) }
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	slices.Sort(files)
	failed := 0
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f), ".json")
		kind, _, _ := strings.Cut(base, "-")
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", f, err)
			continue
		}
		if ok, present := m["ok"].(bool); present && !ok {
			fmt.Fprintf(os.Stderr, "%s: run FAILED: %v\n", f, m["failure"])
			failed++
		}
		get := func(path string) (float64, bool) { return lookup(m, path) }
		switch {
		case kind == "limits":
			put("fsync/s")(get("fsync.fsync_overwrite_per_sec"))
			put("fdatasync/s")(get("fsync.fdatasync_overwrite_per_sec"))
			if s, ok := m["sqlite"].([]any); ok {
				for _, e := range s {
					b := e.(map[string]any)
					n := b["rows_per_txn"].(float64)
					add(fmt.Sprintf("sqlite commits/s @%g", n), b["commits_per_sec"].(float64), true)
					add(fmt.Sprintf("sqlite rows/s @%g", n), b["rows_per_sec"].(float64), true)
				}
			}
			put("http req/s")(get("http.req_per_sec"))
			put("http server µs/req")(get("http.server_cpu_us_per_req"))
			if v, ok := get("held.bytes_per_request"); ok {
				add("held KiB/req", v/1024, true)
			}
		case kind == "throughput" || strings.HasPrefix(kind, "paced"):
			put(kind + " delivered/s")(get("flow.delivered_per_sec"))
			put(kind + " accepted/s")(get("flow.accepted_per_sec"))
			put(kind + " p50 ms")(get("flow.latency.p50_ms"))
			put(kind + " p99 ms")(get("flow.latency.p99_ms"))
			put(kind + " max ms")(get("flow.latency.max_ms"))
			put(kind + " send p99 ms")(get("flow.send_rtt.p99_ms"))
			put(kind + " cpu µs/msg")(get("flow.server_cpu_us_per_delivered"))
			put(kind + " loadgen cpu µs/msg")(get("flow.loadgen_cpu_us_per_delivered"))
			put(kind + " requests/msg")(get("flow.http_requests_per_delivered"))
			put(kind + " poll answers/msg")(get("flow.poll_answers_per_delivered"))
			if strings.HasPrefix(kind, "paced") {
				late, _ := get("flow.late_sends") // omitted when 0
				add(kind+" late sends", late, true)
			}
			if a, ok := get("flow.server_rss_after"); ok {
				b, _ := get("flow.server_rss_before")
				add(kind+" rss growth MiB", (a-b)/(1<<20), true)
			}
		case kind == "backlog":
			put("backlog login→last ms")(get("backlog.login_to_last_ms"))
			put("backlog login ms")(get("backlog.login_ms"))
			put("backlog store msgs/s")(get("backlog.store_rate"))
			put("backlog pages")(get("backlog.pages"))
		case kind == "idle":
			put("idle held")(get("idle.held"))
			if v, ok := get("idle.bytes_per_user"); ok {
				add("idle KiB/user", v/1024, true)
			}
			if v, ok := get("idle.bytes_per_user_from_start"); ok {
				add("idle KiB/user from start", v/1024, true)
			}
			if v, ok := get("idle.server_rss_held"); ok {
				add("idle RSS held MiB", v/(1<<20), true)
			}
		}
	}
	names := make([]string, 0, len(values))
	for k := range values {
		names = append(names, k)
	}
	slices.Sort(names)
	fmt.Println("| figure | runs | min | median | max |")
	fmt.Println("|---|---|---|---|---|")
	for _, k := range names {
		v := values[k]
		slices.Sort(v)
		fmt.Printf("| %s | %d | %s | %s | %s |\n", k, len(v), num(v[0]), num(median(v)), num(v[len(v)-1]))
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "%d runs failed\n", failed)
		os.Exit(1)
	}
}

// lookup follows a dotted path of object keys to a number.
func lookup(m map[string]any, path string) (float64, bool) {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return 0, false
		}
		cur = obj[k]
	}
	v, ok := cur.(float64)
	return v, ok
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func num(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
