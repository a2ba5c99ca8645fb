package lab

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// pollInterval is how often readiness is polled.
const pollInterval = 200 * time.Millisecond

// poll is Poll at the lab's readiness interval.
func poll(ctx context.Context, what string, cond func(context.Context) (bool, string, error)) error {
	return Poll(ctx, what, pollInterval, cond)
}

// Poll calls cond every interval until it returns true, an error, or ctx
// ends. The last reason cond gave is part of the error on timeout. Tests
// and tools that drive a lab wait with it instead of sleeping.
func Poll(ctx context.Context, what string, interval time.Duration, cond func(context.Context) (bool, string, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	last := "not checked yet"
	for {
		ok, reason, err := cond(ctx)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if reason != "" {
			last = reason
		}
		select {
		case <-ctx.Done():
			cause := context.Cause(ctx)
			if cause == nil {
				cause = ctx.Err()
			}
			return fmt.Errorf("waiting for %s: %w; last status: %s", what, cause, last)
		case <-t.C:
		}
	}
}

// insecureHTTP is for health endpoints served with self-signed
// certificates by the components themselves.
var insecureHTTP = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // local health probes only
}

// waitHTTP polls url until it answers 200.
func waitHTTP(ctx context.Context, what, url string, client *http.Client) error {
	if client == nil {
		client = insecureHTTP
	}
	return poll(ctx, what, func(ctx context.Context) (bool, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return false, err.Error(), nil
			}
			return false, err.Error(), nil
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return true, "", nil
		}
		return false, fmt.Sprintf("%s: %s", resp.Status, body), nil
	})
}
