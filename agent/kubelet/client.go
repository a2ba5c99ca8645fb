package kubelet

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Reason classifies a failed checkpoint call.
type Reason string

const (
	ReasonFeatureDisabled   Reason = "FeatureDisabled"
	ReasonPodNotFound       Reason = "PodNotFound"
	ReasonContainerNotFound Reason = "ContainerNotFound"
	ReasonRuntimeError      Reason = "RuntimeError"
	ReasonTimeout           Reason = "Timeout"
	ReasonUnauthorized      Reason = "Unauthorized"
	ReasonForbidden         Reason = "Forbidden"
	ReasonBadResponse       Reason = "BadResponse"
)

// Error is a failed checkpoint call.
type Error struct {
	Reason     Reason
	StatusCode int
	Message    string
	Cause      error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("kubelet checkpoint: %s", e.Reason)
	if e.StatusCode != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.StatusCode)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Cause }

// ReasonOf returns the Reason of err, or "" when it is not an *Error.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// IsFeatureDisabled: the kubelet does not serve the checkpoint API
// (ContainerCheckpoint feature gate off).
func IsFeatureDisabled(err error) bool { return ReasonOf(err) == ReasonFeatureDisabled }

// IsNotFound: the pod or the container is unknown to the kubelet.
func IsNotFound(err error) bool {
	r := ReasonOf(err)
	return r == ReasonPodNotFound || r == ReasonContainerNotFound
}

// IsRuntimeError: the container runtime (CRI-O/CRIU) failed the checkpoint.
func IsRuntimeError(err error) bool { return ReasonOf(err) == ReasonRuntimeError }

// IsTimeout: the checkpoint did not finish in time.
func IsTimeout(err error) bool { return ReasonOf(err) == ReasonTimeout }

// IsUnauthorized: the token was refused (401) or lacks nodes/checkpoint (403).
func IsUnauthorized(err error) bool {
	r := ReasonOf(err)
	return r == ReasonUnauthorized || r == ReasonForbidden
}

// Config configures a Client.
type Config struct {
	// Port is the kubelet's default port (10250); a call may name another
	// (the Node's status.daemonEndpoints.kubeletEndpoint.Port).
	Port int
	// CAFile verifies the kubelet's serving certificate; system roots when
	// empty.
	CAFile string
	// InsecureSkipVerify disables server verification (tests and labs only).
	InsecureSkipVerify bool
	// TokenFile holds the bearer token; it is re-read when it changes.
	TokenFile string
	// Grace is added to the checkpoint timeout for the HTTP deadline.
	Grace time.Duration
}

// Client calls kubelets' checkpoint API.
type Client struct {
	cfg  Config
	http *http.Client

	mu       sync.Mutex
	token    string
	tokenMod time.Time
	tokenLen int64
}

// New builds a Client.
func New(cfg Config) (*Client, error) {
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("invalid kubelet port %d", cfg.Port)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // opt-in for labs
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read kubelet CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in kubelet CA file %s", cfg.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 30 * time.Second
	}
	tr := &http.Transport{TLSClientConfig: tlsCfg, Proxy: nil, ForceAttemptHTTP2: true,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext}
	return &Client{cfg: cfg, http: &http.Client{Transport: tr}}, nil
}

func (c *Client) bearer() (string, error) {
	if c.cfg.TokenFile == "" {
		return "", nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	fi, err := os.Stat(c.cfg.TokenFile)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if c.token != "" && fi.ModTime().Equal(c.tokenMod) && fi.Size() == c.tokenLen {
		return c.token, nil
	}
	b, err := os.ReadFile(c.cfg.TokenFile)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	c.token, c.tokenMod, c.tokenLen = strings.TrimSpace(string(b)), fi.ModTime(), fi.Size()
	return c.token, nil
}

type checkpointResponse struct {
	Items []string `json:"items"`
}

// Checkpoint asks the kubelet at host:port (the configured port when port is
// 0) to checkpoint a container and returns the archive paths it reports (on
// the node's file system).
func (c *Client) Checkpoint(ctx context.Context, host string, port int, namespace, pod, container string, timeout time.Duration) ([]string, error) {
	if port == 0 {
		port = c.cfg.Port
	}
	u := url.URL{
		Scheme: "https",
		Host:   net.JoinHostPort(host, strconv.Itoa(port)),
		Path:   "/checkpoint/" + url.PathEscape(namespace) + "/" + url.PathEscape(pod) + "/" + url.PathEscape(container),
	}
	if timeout > 0 {
		secs := int64(timeout / time.Second)
		if secs < 1 {
			secs = 1
		}
		u.RawQuery = "timeout=" + strconv.FormatInt(secs, 10)
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout+c.cfg.Grace)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return nil, err
	}
	tok, err := c.bearer()
	if err != nil {
		return nil, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded {
			return nil, &Error{Reason: ReasonTimeout, Cause: err}
		}
		return nil, fmt.Errorf("kubelet checkpoint %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, &Error{Reason: ReasonTimeout, StatusCode: resp.StatusCode, Cause: err}
		}
		return nil, fmt.Errorf("read kubelet answer: %w", err)
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 512 {
		msg = msg[:512]
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var out checkpointResponse
		if err := json.Unmarshal(body, &out); err != nil {
			return nil, &Error{Reason: ReasonBadResponse, StatusCode: resp.StatusCode, Message: msg, Cause: err}
		}
		if len(out.Items) == 0 {
			return nil, &Error{Reason: ReasonBadResponse, StatusCode: resp.StatusCode, Message: "no archive in answer"}
		}
		return out.Items, nil
	case http.StatusNotFound:
		switch {
		case bytes.Contains(body, []byte("pod does not exist")):
			return nil, &Error{Reason: ReasonPodNotFound, StatusCode: 404, Message: msg}
		case bytes.Contains(body, []byte("container ")) && bytes.Contains(body, []byte("does not exist")):
			return nil, &Error{Reason: ReasonContainerNotFound, StatusCode: 404, Message: msg}
		default:
			return nil, &Error{Reason: ReasonFeatureDisabled, StatusCode: 404, Message: msg}
		}
	case http.StatusUnauthorized:
		return nil, &Error{Reason: ReasonUnauthorized, StatusCode: 401, Message: msg}
	case http.StatusForbidden:
		return nil, &Error{Reason: ReasonForbidden, StatusCode: 403, Message: msg}
	case http.StatusInternalServerError:
		if strings.Contains(msg, "deadline exceeded") || strings.Contains(msg, "DeadlineExceeded") {
			return nil, &Error{Reason: ReasonTimeout, StatusCode: 500, Message: msg}
		}
		return nil, &Error{Reason: ReasonRuntimeError, StatusCode: 500, Message: msg}
	case http.StatusGatewayTimeout, http.StatusRequestTimeout:
		return nil, &Error{Reason: ReasonTimeout, StatusCode: resp.StatusCode, Message: msg}
	default:
		return nil, &Error{Reason: ReasonBadResponse, StatusCode: resp.StatusCode, Message: msg}
	}
}
