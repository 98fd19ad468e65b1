package main

import (
	"io"
	"net/netip"
	"testing"
)

func TestConfig_ParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1048576": 1 << 20, "10MiB": 10 << 20, "10mib": 10 << 20, " 10 MiB ": 10 << 20, "512KiB": 512 << 10,
		"1KB": 1000, "1MB": 1000000, "1GB": 1000000000, "2G": 2 << 30, "3M": 3 << 20, "4K": 4 << 10, "100B": 100,
		"1GiB": 1 << 30,
	} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Fatalf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "ten", "1.5MiB", "-1", "-1MiB", "10 XB", "10MiBs", "1e6", "99999999999999999999", "9999999999GiB", "0x10"} {
		if got, err := parseSize(bad); err == nil {
			t.Fatalf("parseSize(%q) = %d, want an error", bad, got)
		}
	}
}

func TestConfig_ParsePrefixes(t *testing.T) {
	got, err := parsePrefixes(" 10.0.0.0/8 , 192.168.1.7, ::1, 2001:db8::/32,,10.1.2.3/8 ")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.168.1.7/32", "::1/128", "2001:db8::/32", "10.0.0.0/8"}
	if len(got) != len(want) {
		t.Fatalf("parsePrefixes = %v", got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("parsePrefixes = %v, want %v", got, want)
		}
	}
	if got, err := parsePrefixes(""); err != nil || len(got) != 0 {
		t.Fatalf("empty list: %v %v", got, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "nope", "10.0.0/8", "1.2.3.4/", "/8", "::1/129"} {
		if _, err := parsePrefixes(bad); err == nil {
			t.Fatalf("parsePrefixes(%q) accepted", bad)
		}
	}
	// An IPv4-mapped IPv6 client is matched as IPv4.
	l := newLimits([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, noSharedFailures{})
	if !l.isExempt(netip.MustParseAddr("::ffff:127.0.0.1")) {
		t.Fatal("::ffff:127.0.0.1 is not exempt under 127.0.0.0/8")
	}
}

func TestConfig_MaxGroupMembers(t *testing.T) {
	noEnv := func(string) string { return "" }
	c, err := parseConfig(nil, noEnv, io.Discard)
	if err != nil || c.MaxGroupMembers != defaultMaxGroupMembers {
		t.Fatalf("default: %d, %v", c.MaxGroupMembers, err)
	}
	env := func(k string) string {
		if k == "WEBIM_MAX_GROUP_MEMBERS" {
			return "12"
		}
		return ""
	}
	if c, err := parseConfig(nil, env, io.Discard); err != nil || c.MaxGroupMembers != 12 {
		t.Fatalf("from the environment: %d, %v", c.MaxGroupMembers, err)
	}
	if c, err := parseConfig([]string{"-max-group-members", "3"}, env, io.Discard); err != nil || c.MaxGroupMembers != 3 {
		t.Fatalf("the flag over the environment: %d, %v", c.MaxGroupMembers, err)
	}
	for _, bad := range []string{"0", "-1", "many"} {
		if _, err := parseConfig([]string{"-max-group-members", bad}, noEnv, io.Discard); err == nil {
			t.Fatalf("-max-group-members %s accepted", bad)
		}
	}
}
