package openstack

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// restoreUndo records every resource a restore creates, in order, so that
// a failed or interrupted restore removes them again (newest first), and
// so that temporaries (images, attachments) are removed in any case.
type restoreUndo struct {
	mu    sync.Mutex
	steps []restoreUndoStep
}

type restoreUndoStep struct {
	Kind, ID, Name string
	temporary      bool
	remove         func(ctx context.Context) error
}

// add records a created resource and how to remove it.
func (u *restoreUndo) add(kind, id, name string, temporary bool, remove func(context.Context) error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.steps = append(u.steps, restoreUndoStep{Kind: kind, ID: id, Name: name, temporary: temporary, remove: remove})
}

// done drops a resource that no longer needs removal (a temporary deleted
// on the normal path).
func (u *restoreUndo) done(kind, id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, s := range u.steps {
		if s.Kind == kind && s.ID == id {
			u.steps = append(u.steps[:i], u.steps[i+1:]...)
			return
		}
	}
}

// run removes the recorded resources newest first: all of them
// (all=true, after a failure) or only the temporaries. It runs on a fresh
// context, so that an interrupted restore still cleans up, bounded by
// timeout. It returns the resources it could not remove.
func (u *restoreUndo) run(all bool, timeout time.Duration) (left []string, errs error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	u.mu.Lock()
	steps := append([]restoreUndoStep(nil), u.steps...)
	u.mu.Unlock()
	for i := len(steps) - 1; i >= 0; i-- {
		s := steps[i]
		if !all && !s.temporary {
			continue
		}
		if err := s.remove(ctx); err != nil && !isNotFound(err) {
			left = append(left, fmt.Sprintf("%s %s (%s)", s.Kind, s.ID, s.Name))
			errs = errors.Join(errs, fmt.Errorf("remove %s %s: %w", s.Kind, s.ID, err))
			continue
		}
		u.done(s.Kind, s.ID)
	}
	return left, errs
}

// restoreWait calls check every interval (growing to 5 s) until it reports
// done or fails, or timeout passes; what names the wait in errors.
func restoreWait(ctx context.Context, what string, timeout time.Duration, check func(context.Context) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	wait := 500 * time.Millisecond
	for {
		done, err := check(ctx)
		if err != nil || done {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*3/2, 5*time.Second)
	}
}

// restoreAPIError shows an API error as the API's own message (method,
// URL, status, body) while errors.Is/As still reach the original.
type restoreAPIError struct{ err error }

func (e restoreAPIError) Error() string { return apiMessage(e.err) }
func (e restoreAPIError) Unwrap() error { return e.err }

func apiErr(err error) error {
	if err == nil {
		return nil
	}
	return restoreAPIError{err}
}
