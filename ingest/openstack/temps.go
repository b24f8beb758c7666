package openstack

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// journalWriter is where a release records what it learned and did.
type journalWriter interface {
	Created(Temp) error
	Deleted(Temp) error
	Live() []Temp
}

// temps creates and deletes one run's temporary resources through the
// journal: a temporary is journaled before the request that creates it,
// and forgotten only once the cloud confirms it is gone.
type temps struct {
	cl *Cloud
	j  *Journal
	to Timeouts
}

// create journals t, runs do, and journals the id it returns. On error
// the intent stays: the request may have created the resource anyway
// (a lost answer), and release will look it up by name.
func (tm *temps) create(ctx context.Context, t Temp, do func(context.Context) (string, error)) (Temp, error) {
	if err := tm.j.Intent(t); err != nil {
		return t, err
	}
	id, err := do(ctx)
	if err != nil {
		return t, err
	}
	t.ID = id
	return t, tm.j.Created(t)
}

// adopt journals a temporary that someone else created for cairn (Nova's
// snapshots of a volume-backed server).
func (tm *temps) adopt(t Temp) error { return tm.j.Created(t) }

// release deletes t and waits until it is gone. It runs even after ctx
// was cancelled (SIGINT), with its own time limit.
func (tm *temps) release(ctx context.Context, t Temp) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tm.to.Delete+time.Minute)
	defer cancel()
	return releaseTemp(ctx, tm.cl, tm.j, t, tm.to)
}

// releaseServer deletes every live temporary of one server in dependency
// order, even after ctx was cancelled.
func (tm *temps) releaseServer(ctx context.Context, serverID string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*tm.to.Delete+time.Minute)
	defer cancel()
	return releaseAll(ctx, tm.cl, serverJournal{tm.j, serverID}, tm.to)
}

// serverJournal is the view of a journal limited to one server.
type serverJournal struct {
	*Journal
	server string
}

func (s serverJournal) Live() []Temp {
	var out []Temp
	for _, t := range s.Journal.Live() {
		if t.Server == s.server {
			out = append(out, t)
		}
	}
	return out
}

// releaseAll deletes the journal's live temporaries, again as long as a
// round found more (an image's snapshots are adopted when it is deleted).
func releaseAll(ctx context.Context, cl *Cloud, jw journalWriter, to Timeouts) error {
	failed := map[string]error{}
	for {
		progress := false
		for _, t := range jw.Live() {
			if _, ok := failed[t.Name+t.ID]; ok {
				continue
			}
			if err := releaseTemp(ctx, cl, jw, t, to); err != nil {
				failed[t.Name+t.ID] = err
				continue
			}
			progress = true
		}
		if !progress {
			break
		}
	}
	var errs []error
	for _, err := range failed {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// releaseTemp finds (by name if needed) and deletes one temporary, then
// records its deletion.
func releaseTemp(ctx context.Context, cl *Cloud, jw journalWriter, t Temp, to Timeouts) error {
	if t.ID == "" {
		id, err := cl.findTemp(ctx, t)
		if err != nil {
			return fmt.Errorf("look up temporary %s %s: %s", t.Kind, t.Name, apiMessage(err))
		}
		if id == "" {
			return jw.Deleted(t) // never created
		}
		t.ID = id
		if err := jw.Created(t); err != nil {
			return err
		}
	}
	if t.Kind == KindImage {
		// A Nova snapshot image of a volume-backed server references
		// Cinder snapshots that deleting the image leaves behind: adopt
		// them first.
		snaps, err := cl.imageSnapshots(ctx, t.ID)
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("read temporary image %s (%s): %s", t.Name, t.ID, apiMessage(err))
		}
		for _, s := range snaps {
			if err := jw.Created(Temp{Kind: KindSnapshot, Name: "snapshot for " + t.Name, ID: s, Server: t.Server, Project: t.Project}); err != nil {
				return err
			}
		}
	}
	if err := cl.deleteAndWait(ctx, t, to); err != nil {
		return fmt.Errorf("delete temporary %s %s (%s): %s", t.Kind, t.Name, t.ID, apiMessage(err))
	}
	return jw.Deleted(t)
}
