package openstack

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

	mu        sync.Mutex
	uncertain map[string]time.Time // tempKey of an intent -> when its create failed without an answer
}

// createTimeout bounds a create request that runs on after SIGINT/SIGTERM;
// settleTime is how long after a create failed without an answer its
// resource may still appear (the API goes on with a request whose client
// is gone: cinder-api created a Glance image 0.5 s after cairn had looked
// for it by name and found nothing). Tests shorten settleTime.
var createTimeout, settleTime = 2 * time.Minute, 20 * time.Second

// create journals t, runs do, and journals the id it returns. The
// request is not abandoned when ctx is cancelled (SIGINT): it is short,
// and its answer is the only reliable way to learn the id of what the
// cloud creates. On an error without a definite refusal (no answer, a
// 5xx) the intent stays, as the resource may exist anyway, and release
// looks it up by name once it had time to appear; a 4xx means nothing
// was created.
func (tm *temps) create(ctx context.Context, t Temp, do func(context.Context) (string, error)) (Temp, error) {
	if err := tm.j.Intent(t); err != nil {
		return t, err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	defer cancel()
	id, err := do(cctx)
	if err != nil {
		if st := httpStatus(err); st >= 400 && st < 500 {
			return t, errors.Join(err, tm.j.Deleted(t))
		}
		tm.mu.Lock()
		if tm.uncertain == nil {
			tm.uncertain = map[string]time.Time{}
		}
		tm.uncertain[tempKey(t)] = time.Now()
		tm.mu.Unlock()
		return t, err
	}
	t.ID = id
	return t, tm.j.Created(t)
}

// settle waits until every create of ts that failed without an answer
// had settleTime to take effect, so that looking it up by name finds it.
func (tm *temps) settle(ctx context.Context, ts []Temp) {
	tm.mu.Lock()
	var until time.Time
	for _, t := range ts {
		if at, ok := tm.uncertain[tempKey(t)]; ok && t.ID == "" && at.Add(settleTime).After(until) {
			until = at.Add(settleTime)
		}
	}
	tm.mu.Unlock()
	if d := time.Until(until); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
}

// adopt journals a temporary that someone else created for cairn (Nova's
// snapshots of a volume-backed server).
func (tm *temps) adopt(t Temp) error { return tm.j.Created(t) }

// release deletes t and waits until it is gone. It runs even after ctx
// was cancelled (SIGINT), with its own time limit.
func (tm *temps) release(ctx context.Context, t Temp) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tm.to.Delete+time.Minute+settleTime)
	defer cancel()
	tm.settle(ctx, []Temp{t})
	return releaseTemp(ctx, tm.cl, tm.j, t, tm.to)
}

// releaseServer deletes every live temporary of one server in dependency
// order, even after ctx was cancelled.
func (tm *temps) releaseServer(ctx context.Context, serverID string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*tm.to.Delete+time.Minute+settleTime)
	defer cancel()
	sj := serverJournal{tm.j, serverID}
	tm.settle(ctx, sj.Live())
	return releaseAll(ctx, tm.cl, sj, tm.to)
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
