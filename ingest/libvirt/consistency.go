package libvirt

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// suspendMu serializes suspensions: at most one guest of this process is
// paused at any time.
var suspendMu sync.Mutex

// atPointInTime runs the pre command, makes the guest consistent as far as
// asked and possible, calls fix (which fixes the point in time: starts the
// backup job or takes the snapshot), undoes the freeze or suspension at
// once, and runs the post command. It records the level achieved.
func (j *job) atPointInTime(ctx context.Context, fix func() error) error {
	j.res.Consistency = "crash"
	if err := j.hook(ctx, "pre", j.o.Pre); err != nil {
		return err
	}
	defer j.hook(context.WithoutCancel(ctx), "post", j.o.Post)
	if j.o.Quiesce {
		if n, err := j.c.L.DomainFsfreeze(j.dom, nil, 0); err != nil {
			j.note("cannot quiesce: the guest agent did not freeze the file systems (%v); the backup is crash-consistent", firstLine(err))
		} else {
			j.res.Consistency = "filesystem"
			defer func() {
				if _, err := j.c.L.DomainFsthaw(j.dom, nil, 0); err != nil {
					j.note("thawing the guest file systems failed: %v; check the guest (virsh domfsthaw %s)", err, j.name)
				}
			}()
			_ = n
		}
	}
	if j.o.Suspend && j.res.Consistency == "crash" {
		resume, err := j.suspend()
		if err != nil {
			return err
		}
		defer resume()
	}
	return fix()
}

// suspend pauses the guest with a bound: the guest resumes after
// MaxSuspend even if the point in time is not fixed by then, in which case
// the backup is only crash-consistent.
func (j *job) suspend() (resume func(), err error) {
	suspendMu.Lock()
	if err := j.c.L.DomainSuspend(j.dom); err != nil {
		suspendMu.Unlock()
		return nil, fmt.Errorf("suspend domain %s: %w", j.name, err)
	}
	start := time.Now()
	var once sync.Once
	expired := false
	do := func() {
		once.Do(func() {
			if err := j.c.L.DomainResume(j.dom); err != nil {
				j.note("resume failed: %v; resume it with `virsh resume %s`", err, j.name)
			}
			suspendMu.Unlock()
		})
	}
	timer := time.AfterFunc(j.o.MaxSuspend, func() { expired = true; do() })
	j.res.Consistency = "suspended"
	return func() {
		timer.Stop()
		do()
		if expired {
			j.res.Consistency = "crash"
			j.note("the guest was resumed after the suspension bound of %s, before the backup point was fixed: crash-consistent", j.o.MaxSuspend)
		} else {
			j.note("guest suspended for %s", time.Since(start).Round(time.Millisecond))
		}
	}, nil
}

// hook runs a user command with the domain in its environment.
func (j *job) hook(ctx context.Context, phase, command string) error {
	if command == "" {
		return nil
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = append(os.Environ(), "CAIRN_DOMAIN="+j.name, "CAIRN_DOMAIN_UUID="+j.uuid, "CAIRN_PHASE="+phase)
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("%s command failed: %v: %s", phase, err, strings.TrimSpace(string(out)))
		if phase == "pre" {
			return fmt.Errorf("domain %s: %s; no backup taken", j.name, msg)
		}
		j.note("%s", msg)
	}
	return nil
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
