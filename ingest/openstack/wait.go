package openstack

import (
	"context"
	"fmt"
	"time"
)

// ErrStatusTimeout is wrapped by errors of waits that ran out of time.
var ErrStatusTimeout = fmt.Errorf("timed out waiting for a status")

// pollInterval is the first wait between two status reads; it grows to
// maxPoll. Tests shorten them.
var pollInterval, maxPoll = 500 * time.Millisecond, 5 * time.Second

// waitFor polls get until it reports one of want. A status in fail, or
// an error from get, ends the wait with an error naming what.
func waitFor(ctx context.Context, what string, timeout time.Duration, get func(context.Context) (string, error), want []string, fail []string) (string, error) {
	deadline := time.Now().Add(timeout)
	d := pollInterval
	last := ""
	for {
		st, err := get(ctx)
		if err != nil {
			return st, fmt.Errorf("%s: %s", what, apiMessage(err))
		}
		last = st
		for _, w := range want {
			if st == w {
				return st, nil
			}
		}
		for _, f := range fail {
			if st == f {
				return st, fmt.Errorf("%s went to status %q", what, st)
			}
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("%s: still %q after %s: %w", what, last, timeout, ErrStatusTimeout)
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(d):
		}
		d = min(d*3/2, maxPoll)
	}
}
