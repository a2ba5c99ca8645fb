package report

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// A registry answering 200 or 401 on /v2/ is reachable; one that is not
// listening, or a server that is not a registry, is reported with why.
func TestProbeRegistries(t *testing.T) {
	handler := func(status int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v2/" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(status)
		})
	}
	open := httptest.NewServer(handler(http.StatusOK))
	defer open.Close()
	auth := httptest.NewServer(handler(http.StatusUnauthorized))
	defer auth.Close()
	web := httptest.NewServer(http.NotFoundHandler())
	defer web.Close()
	secure := httptest.NewTLSServer(handler(http.StatusOK))
	defer secure.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()

	host := func(s *httptest.Server) string { u, _ := url.Parse(s.URL); return u.Host }
	insecure := []string{host(open), host(auth), host(web), down}
	probe := ProbeRegistries(secure.Client(), append(append([]string{}, insecure...), host(secure)), insecure)
	got := probe(context.Background())
	for h, want := range map[string]string{
		host(open):   RegistryOK,
		host(auth):   RegistryOK,
		host(secure): RegistryOK,
		host(web):    "answered 404 Not Found, not a registry's 200 or 401",
		down:         "unreachable: ",
	} {
		if !strings.Contains(got[h], want) {
			t.Errorf("registry %s: got %q, want %q", h, got[h], want)
		}
	}
	if len(got) != 5 {
		t.Errorf("got %d results, want 5: %v", len(got), got)
	}
}
