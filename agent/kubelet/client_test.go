package kubelet

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type seen struct {
	mu     sync.Mutex
	method string
	path   string
	query  string
	auth   []string
}

func startKubelet(t *testing.T, h http.HandlerFunc) (*httptest.Server, *seen, string, int) {
	t.Helper()
	s := &seen{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.method, s.path, s.query = r.Method, r.URL.EscapedPath(), r.URL.RawQuery
		s.auth = append(s.auth, r.Header.Get("Authorization"))
		s.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.URL)
	port, _ := strconv.Atoi(u.Port())
	return srv, s, ca, port
}

func answer(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}

func TestCheckpointAnswers(t *testing.T) {
	cases := []struct {
		name       string
		handler    http.HandlerFunc
		wantItems  []string
		wantReason Reason
		check      func(error) bool
	}{
		{
			name:      "200 with archive",
			handler:   answer(200, `{"items":["/var/lib/kubelet/checkpoints/checkpoint-web-0_db-app-2026-11-25T07:00:00Z.tar"]}`),
			wantItems: []string{"/var/lib/kubelet/checkpoints/checkpoint-web-0_db-app-2026-11-25T07:00:00Z.tar"},
		},
		{name: "200 not JSON", handler: answer(200, `oops`), wantReason: ReasonBadResponse},
		{name: "200 without items", handler: answer(200, `{"items":[]}`), wantReason: ReasonBadResponse},
		{name: "404 feature gate off", handler: answer(404, "404 page not found"), wantReason: ReasonFeatureDisabled, check: IsFeatureDisabled},
		{name: "404 unknown pod", handler: answer(404, "pod does not exist"), wantReason: ReasonPodNotFound, check: IsNotFound},
		{name: "404 unknown container", handler: answer(404, "container app does not exist"), wantReason: ReasonContainerNotFound, check: IsNotFound},
		{name: "500 runtime error", handler: answer(500, "checkpointing of db/web-0/app failed (rpc error: code = Unknown desc = criu failed)"), wantReason: ReasonRuntimeError, check: IsRuntimeError},
		{name: "500 runtime timeout", handler: answer(500, "checkpointing of db/web-0/app failed (rpc error: code = DeadlineExceeded desc = context deadline exceeded)"), wantReason: ReasonTimeout, check: IsTimeout},
		{name: "401", handler: answer(401, "Unauthorized"), wantReason: ReasonUnauthorized, check: IsUnauthorized},
		{name: "403", handler: answer(403, `Forbidden (user=system:serviceaccount:x:y, verb=create, resource=nodes, subresource=checkpoint)`), wantReason: ReasonForbidden, check: IsUnauthorized},
		{name: "502", handler: answer(502, "bad gateway"), wantReason: ReasonBadResponse},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, s, ca, port := startKubelet(t, tc.handler)
			tok := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(tok, []byte("tok-1\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := New(Config{Port: port, CAFile: ca, TokenFile: tok})
			if err != nil {
				t.Fatal(err)
			}
			items, err := c.Checkpoint(context.Background(), "127.0.0.1", 0, "db", "web-0", "app", 30*time.Second)
			if diff := cmp.Diff(tc.wantItems, items); diff != "" {
				t.Errorf("items (-want +got):\n%s", diff)
			}
			if got := ReasonOf(err); got != tc.wantReason {
				t.Errorf("reason = %q (err %v), want %q", got, err, tc.wantReason)
			}
			if tc.check != nil && !tc.check(err) {
				t.Errorf("IsX helper did not recognise %v", err)
			}
			if tc.wantReason == "" && err != nil {
				t.Errorf("unexpected error %v", err)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if diff := cmp.Diff([]string{"POST", "/checkpoint/db/web-0/app", "timeout=30", "Bearer tok-1"}, []string{s.method, s.path, s.query, s.auth[0]}); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckpointClientTimeout(t *testing.T) {
	release := make(chan struct{})
	_, _, ca, port := startKubelet(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	c, err := New(Config{Port: port, CAFile: ca, Grace: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Checkpoint(context.Background(), "127.0.0.1", 0, "db", "web-0", "app", time.Second)
	if !IsTimeout(err) {
		t.Fatalf("got %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout took %v", d)
	}
}

func TestTokenRereadOnRotation(t *testing.T) {
	_, s, ca, port := startKubelet(t, answer(200, `{"items":["/x.tar"]}`))
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Port: port, CAFile: ca, TokenFile: tok})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Checkpoint(ctx, "127.0.0.1", 0, "n", "p", "c", 0); err != nil {
		t.Fatal(err)
	}
	// Kubelet-projected tokens are swapped by an atomic rename.
	next := tok + ".new"
	if err := os.WriteFile(next, []byte("second-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Checkpoint(ctx, "127.0.0.1", 0, "n", "p", "c", 0); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if diff := cmp.Diff([]string{"Bearer first", "Bearer second-token"}, s.auth); diff != "" {
		t.Errorf("Authorization headers (-want +got):\n%s", diff)
	}
}

func TestUntrustedServerRefused(t *testing.T) {
	_, _, _, port := startKubelet(t, answer(200, `{"items":["/x.tar"]}`))
	c, err := New(Config{Port: port})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Checkpoint(context.Background(), "127.0.0.1", 0, "n", "p", "c", 0); err == nil {
		t.Fatal("a kubelet with an unknown CA was trusted")
	}
}

func TestPortPerCall(t *testing.T) {
	_, s, ca, port := startKubelet(t, answer(200, `{"items":["/x.tar"]}`))
	c, err := New(Config{Port: 1, CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Checkpoint(context.Background(), "127.0.0.1", port, "n", "p", "c", 0); err != nil {
		t.Fatalf("call with the node's own port: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path != "/checkpoint/n/p/c" {
		t.Errorf("path %q", s.path)
	}
}
