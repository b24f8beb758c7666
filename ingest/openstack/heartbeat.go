package openstack

import (
	"context"
	"os"
	"time"
)

// A backup run's temporaries say which host runs it (MetaHost), where its
// journal is there (MetaJournal) and when the run last showed it was
// alive (MetaHeartbeat, refreshed every HeartbeatInterval while the run
// lives). `cairn openstack cleanup --orphans` decides whether a run lives
// by its journal lock when it can see it: in its own journal directory,
// or at the recorded path when the run is of this host (another user's or
// another --journal-dir's run). On another host it cannot: it leaves a
// run's temporaries alone while their newest heartbeat (or creation or
// update, for what carries no heartbeat) is younger than its grace age,
// DefaultOrphanGrace unless told otherwise. A grace many
// heartbeats long means that an API hiccup or a slow round of updates
// never gets a live run's temporaries deleted under it; a run killed on
// another host is cleaned up a grace age after its last heartbeat.

// Metadata keys of the heartbeat.
const (
	MetaHost      = "cairn_host"      // hostname of the machine that runs the backup
	MetaHeartbeat = "cairn_heartbeat" // RFC 3339 UTC time the run last refreshed it
	MetaJournal   = "cairn_journal"   // path of the run's journal on that host
)

// HeartbeatInterval is how often a run refreshes its temporaries'
// heartbeat; DefaultOrphanGrace is how long cleanup on another host waits
// after the last one.
var (
	HeartbeatInterval  = 10 * time.Minute
	DefaultOrphanGrace = 6 * time.Hour
)

// hostname is this machine's name as temporaries record it.
func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
}

// heartbeat refreshes MetaHeartbeat on every live temporary of the run
// that has an id and can carry metadata, until stop is called.
func (b *backupRun) heartbeat(ctx context.Context) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(HeartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				now := time.Now().UTC().Format(time.RFC3339)
				for _, tmp := range b.tm.j.Live() {
					if tmp.ID != "" {
						b.cl.beat(ctx, tmp, now) // best effort: the grace covers a missed beat
					}
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// beat sets the heartbeat of one temporary.
func (cl *Cloud) beat(ctx context.Context, t Temp, now string) error {
	md := map[string]any{"metadata": map[string]string{MetaHeartbeat: now}}
	switch t.Kind {
	case KindVolume:
		return postJSON(ctx, cl.Volume, "volumes/"+t.ID+"/metadata", md, nil, 200)
	case KindSnapshot:
		return postJSON(ctx, cl.Volume, "snapshots/"+t.ID+"/metadata", md, nil, 200)
	case KindImage:
		return cl.setImageProperty(ctx, t.ID, MetaHeartbeat, now)
	}
	return nil // attachments carry no metadata: their volume's heartbeat covers them
}

// setImageProperty adds or replaces one property of an image.
func (cl *Cloud) setImageProperty(ctx context.Context, id, key, value string) error {
	var err error
	for _, op := range []string{"add", "replace"} {
		_, err = cl.Image.Patch(ctx, cl.Image.ServiceURL("images", id), []map[string]any{{"op": op, "path": "/" + key, "value": value}}, nil,
			gophercloudOpts{"Content-Type": "application/openstack-images-v2.1-json-patch"}.opts())
		if err == nil {
			return nil
		}
	}
	return err
}
