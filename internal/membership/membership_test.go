package membership

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	good := []struct {
		in        string
		endpoints []string
		prefix    string
	}{
		{"etcd://127.0.0.1:2379/spillway", []string{"http://127.0.0.1:2379"}, "/spillway"},
		{"etcd://a:1,b:2,c:65535/x/y/", []string{"http://a:1", "http://b:2", "http://c:65535"}, "/x/y"},
		{"etcd://[::1]:2379/p", []string{"http://[::1]:2379"}, "/p"},
		{"etcd://etcd.internal:2379/spill-way_1.prod", []string{"http://etcd.internal:2379"}, "/spill-way_1.prod"},
	}
	for _, tc := range good {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseURL(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Endpoints, tc.endpoints) || got.Prefix != tc.prefix {
				t.Errorf("ParseURL = %+v, want %v %q", got, tc.endpoints, tc.prefix)
			}
		})
	}
	bad := []struct{ in, want string }{
		{"", "want etcd://"},
		{"http://127.0.0.1:2379/x", "want etcd://"},
		{"etcd://127.0.0.1:2379", "no key prefix"},
		{"etcd://127.0.0.1:2379/", "empty key prefix"},
		{"etcd://127.0.0.1/x", `endpoint "127.0.0.1": not HOST:PORT`},
		{"etcd://127.0.0.1:0/x", "port must be"},
		{"etcd://127.0.0.1:65536/x", "port must be"},
		{"etcd://127.0.0.1:02379/x", "port must be"},
		{"etcd://127.0.0.1:+1/x", "port must be"},
		{"etcd://:2379/x", "bad host"},
		{"etcd://a:1,,b:2/x", `endpoint "": not HOST:PORT`},
		{"etcd://user:pw@a:1/x", "no user information"},
		{"etcd://a:1/x?y=1", "no query"},
		{"etcd://a:1/x#f", "no query"},
		{"etcd://a:1/x//y", "segment"},
		{"etcd://a:1/x/../y", "segment"},
		{"etcd://a:1/x y", "printable"},
		{"etcd://a:1/é", "printable"},
		{"etcd://a:1/" + strings.Repeat("x", 300), "longer than"},
	}
	for _, tc := range bad {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ParseURL(tc.in)
			if err == nil || !errors.Is(err, ErrURL) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseURL(%q) = %v, want an ErrURL saying %q", tc.in, err, tc.want)
			}
		})
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"etcd://127.0.0.1:2379/spillway",
		"etcd://a:1,b:2/x/y/",
		"etcd://[::1]:2379/p",
		"etcd://127.0.0.1:2379",
		"etcd://u@a:1/x?q#f",
		"etcd://a:1/x/../y",
		"etcd://[::1:2379/p",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseURL(s)
		if err != nil {
			if !errors.Is(err, ErrURL) {
				t.Fatalf("ParseURL(%q) error %v does not wrap ErrURL", s, err)
			}
			return
		}
		if len(tg.Endpoints) == 0 || !strings.HasPrefix(tg.Prefix, "/") || strings.HasSuffix(tg.Prefix, "/") {
			t.Fatalf("ParseURL(%q) = %+v", s, tg)
		}
		again, err := ParseURL(tg.String())
		if err != nil || !slices.Equal(again.Endpoints, tg.Endpoints) || again.Prefix != tg.Prefix {
			t.Fatalf("ParseURL(%q) = %+v; its String %q parses to %+v, %v", s, tg, tg.String(), again, err)
		}
	})
}
