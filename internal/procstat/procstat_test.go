package procstat

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// Fields 14 and 15 (utime, stime) are 250 and 50 ticks; the name has a
	// space and a parenthesis.
	stat := "1234 (web im) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0"
	got, err := ParseStatCPU(stat)
	if err != nil || got != 3*time.Second {
		t.Fatalf("ParseStatCPU = %v, %v; want 3s", got, err)
	}
	if _, err := ParseStatCPU("garbage"); err == nil {
		t.Fatal("garbage parsed")
	}
}

func TestRSSOfThisProcess(t *testing.T) {
	rss, err := RSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Fatalf("RSS = %d, %v", rss, err)
	}
}
