package field

import (
	"math"
	"strings"
	"testing"
)

func TestHostPort(t *testing.T) {
	for _, s := range []string{"127.0.0.1:80", ":0", "localhost:8080", "[::1]:9"} {
		if err := HostPort("x", s); err != nil {
			t.Errorf("HostPort(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"x:y", "nohost", "1.2.3.4:99999", ""} {
		if err := HostPort("lb.listen", s); err == nil || !strings.HasPrefix(err.Error(), "lb.listen: ") {
			t.Errorf("HostPort(%q) = %v, want an error naming the field", s, err)
		}
	}
}

func TestHTTPURL(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:9000", "https://api.example/v1", "http://[::1]:80/"} {
		if err := HTTPURL("u", ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"http://":                 "names no host",
		"http://:9000":            "names no host",
		"127.0.0.1:9000":          "not an absolute http(s) URL",
		"ftp://x":                 "not an absolute http(s) URL",
		"http://x:99999":          "port must be",
		"http://x:":               "empty port",
		"http://u:secret@x":       "user information",
		"http://x/#frag":          "fragment",
		"http:opaque":             "not an absolute",
		"http://x:0":              "port must be",
		"::":                      "not an absolute",
		"http://u:secret@x:1/a#b": `"http://u:xxxxx@x:1/a#b"`,
	} {
		if err := HTTPURL("u", bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", bad, err, want)
		}
	}
}

func TestFinite(t *testing.T) {
	if Finite("f", 1.5) != nil || Finite("f", math.NaN()) == nil || Finite("f", math.Inf(1)) == nil {
		t.Error("CheckFinite")
	}
}
